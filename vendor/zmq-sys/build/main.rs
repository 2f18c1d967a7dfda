pub fn configure() {
    println!("cargo:rerun-if-changed=build/main.rs");
    println!("cargo:rerun-if-env-changed=PROFILE");

    // Note that by default `libzmq` builds without `libsodium` by instead
    // relying on `tweetnacl`. However since this `tweetnacl` [has never been
    // audited nor is ready for production](https://github.com/zeromq/libzmq/issues/3006),
    // we link against `libsodium` to enable `ZMQ_CURVE`.
    zeromq_src::Build::new()
        .with_libsodium(libsodium())
        .build();
}

// PATCHED (see PATCHED.md): with the `curve` feature, libsodium-sys-stable
// (`links = "sodium"`) has built libsodium and passes its location on as
// `cargo:include` / `cargo:lib`, which cargo hands to this script as
// DEP_SODIUM_INCLUDE / DEP_SODIUM_LIB.
#[cfg(feature = "curve")]
fn libsodium() -> Option<zeromq_src::LibLocation> {
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{} not set: libsodium-sys-stable did not build libsodium", name))
    };
    let include = var("DEP_SODIUM_INCLUDE");
    let lib = var("DEP_SODIUM_LIB");
    // zeromq-src prints the search path with `{:?}` (quoted); say it plainly too.
    println!("cargo:rustc-link-search=native={lib}");
    Some(zeromq_src::LibLocation::new(lib, include))
}

#[cfg(not(feature = "curve"))]
fn libsodium() -> Option<zeromq_src::LibLocation> {
    None
}

fn main() {
    configure()
}
