//! The user's side of a simulation: the applications behind the workers
//! ([`Handler`]s, with a [`ServiceTime`]) and the check of every answer
//! against its request ([`Check`]).
//!
//! # How a request and its answer cross the simulated network
//!
//! The simulation tells requests apart by a *tag*, a first frame it adds to
//! every request body (`c3.17`: client 3's 18th request). The worker strips
//! it before the handler sees the body, and starts each piece of the answer
//! with a marker frame naming the tag and the piece (`c3.17/p0`,
//! `c3.17/final`) before the handler's frames. The [`Checker`] reads only
//! the tags and markers; the [`Check`] sees only the application's frames.
//! So a handler and a check never see the kit's frames, and the brokers'
//! limits see the application's bodies plus one frame of a few bytes per
//! request and per piece (mind it next to a tight
//! `BrokerConfig::max_message_frames`). An application frame equal to its
//! own request's marker would be taken for one; the markers are spelt
//! exactly (`c3.17/p2`, never `c3.17/p02`) to make that unlikely.
//!
//! [`Checker`]: crate::Checker

use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{Multipart, RequestId};

use crate::rng::Rng;

/// What a worker's application answers to one request: PARTIALs, then the
/// last part.
///
/// In the MDP/0.2 dialects each of `parts` is one PARTIAL, sent spread over
/// the service time, and `last` is the FINAL. An MDP/0.1 worker cannot
/// stream: it sends the frames of `parts` and `last` joined, in order, in
/// its one REPLY, and the [`Check`] sees that as an answer with no parts.
/// (MDP/0.1 *clients* of a streaming worker get its parts joined by the
/// broker; the check sees those parts one by one.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The PARTIALs, in order.
    pub parts: Vec<Multipart>,
    /// The FINAL (or the REPLY).
    pub last: Multipart,
}

impl Answer {
    /// An answer of one part: a REPLY or a FINAL.
    pub fn reply(last: Multipart) -> Self {
        Answer { parts: Vec::new(), last }
    }
}

impl From<Multipart> for Answer {
    fn from(last: Multipart) -> Self {
        Answer::reply(last)
    }
}

/// A worker's application: what it answers to each request's body.
///
/// Any `FnMut(&[Bytes]) -> A` with `A: Into<Answer>` is one, so a closure
/// returning a `Multipart` answers with one reply and a closure returning
/// an [`Answer`] streams. A handler may keep state across requests; each
/// worker process has its own, made afresh when the process starts (and
/// when it restarts after a crash). It must be a function of what it was
/// given: reading the system clock, a thread-local generator or a
/// `HashMap`'s iteration order makes a run unrepeatable.
pub trait Handler {
    /// The answer to a request whose body (the application's frames) is
    /// `request`.
    fn handle(&mut self, request: &[Bytes]) -> Answer;
}

impl<F, A> Handler for F
where
    F: FnMut(&[Bytes]) -> A,
    A: Into<Answer>,
{
    fn handle(&mut self, request: &[Bytes]) -> Answer {
        self(request).into()
    }
}

/// Makes a worker process's handler, once per start of the process.
pub type MakeHandler = Rc<dyn Fn() -> Box<dyn Handler>>;

/// How long a worker's application takes to answer a request, drawn per
/// request from the simulation's seed.
#[derive(Clone)]
pub enum ServiceTime {
    /// Always this long.
    Fixed(Duration),
    /// Evenly spread in `min..=max`.
    Uniform {
        /// The shortest.
        min: Duration,
        /// The longest.
        max: Duration,
    },
    /// Exponentially distributed with this mean (capped at 20 × the mean),
    /// as the service times of many independent requests often are.
    Exponential {
        /// The mean.
        mean: Duration,
    },
    /// Drawn by a function of the simulation's generator.
    Custom(Rc<dyn Fn(&mut Rng) -> Duration>),
}

impl ServiceTime {
    /// A duration drawn from this distribution. `Fixed` draws nothing, so
    /// runs with fixed times use the generator as they always did.
    pub fn draw(&self, rng: &mut Rng) -> Duration {
        match self {
            ServiceTime::Fixed(d) => *d,
            ServiceTime::Uniform { min, max } => *min + rng.duration(max.saturating_sub(*min)),
            ServiceTime::Exponential { mean } => {
                // 1 - u is in (0, 1]: its logarithm is finite.
                let u = 1.0 - (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                mean.mul_f64((-u.ln()).min(20.0))
            }
            ServiceTime::Custom(f) => f(rng),
        }
    }
}

impl fmt::Debug for ServiceTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceTime::Fixed(d) => f.debug_tuple("Fixed").field(d).finish(),
            ServiceTime::Uniform { min, max } => f.debug_struct("Uniform").field("min", min).field("max", max).finish(),
            ServiceTime::Exponential { mean } => f.debug_struct("Exponential").field("mean", mean).finish(),
            ServiceTime::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// A request as its client's application made it, for the [`Check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The client's index.
    pub client: usize,
    /// The request's id at its client.
    pub id: RequestId,
    /// The service it was for.
    pub service: Bytes,
    /// Its body (the application's frames).
    pub body: Multipart,
}

/// The user's check of each answer a client's application gets against
/// the request it made: `Err` says what is wrong, and is a violation like
/// any broken invariant. It sees whole answers only: the PARTIALs the
/// client took, in order, and the FINAL or REPLY. Under loss of PARTIALs
/// ([`NetStats::lost_partials`](crate::NetStats::lost_partials)) some
/// parts may be missing.
pub type Check = Box<dyn FnMut(&Call, &Answer) -> Result<(), String>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_of_either_shape_are_handlers() {
        let mut reply = |req: &[Bytes]| req.to_vec();
        let mut stream = |req: &[Bytes]| Answer { parts: vec![vec![Bytes::from_static(b"p")]], last: req.to_vec() };
        let body = [Bytes::from_static(b"x")];
        assert_eq!(Handler::handle(&mut reply, &body), Answer::reply(body.to_vec()));
        assert_eq!(Handler::handle(&mut stream, &body).parts.len(), 1);
    }

    #[test]
    fn service_times_stay_in_their_ranges() {
        let mut rng = Rng::new(1);
        let (min, max) = (Duration::from_millis(2), Duration::from_millis(5));
        let mean = Duration::from_millis(4);
        let mut total = Duration::ZERO;
        for _ in 0..2000 {
            let d = ServiceTime::Uniform { min, max }.draw(&mut rng);
            assert!((min..=max).contains(&d), "{d:?}");
            let e = ServiceTime::Exponential { mean }.draw(&mut rng);
            assert!(e <= mean * 20);
            total += e;
        }
        let average = total / 2000;
        assert!(average > mean * 8 / 10 && average < mean * 12 / 10, "mean {average:?}");
        assert_eq!(ServiceTime::Fixed(mean).draw(&mut rng), mean);
    }
}
