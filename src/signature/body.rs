//! The request body handed to the inner service: the exact frames received, already verified.

use std::{
    collections::VecDeque,
    convert::Infallible,
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::budget::BudgetPermit;

/// The body of a verified request: the exact bytes received, in the frames they arrived in.
///
/// The frames are the `Bytes` the server read from the socket; they are handed on without being
/// copied. [`to_bytes`](Self::to_bytes) gives the whole body as one `Bytes` (without copying when
/// it arrived in one frame). The bytes count against the layer's
/// [`BufferBudget`](super::BufferBudget) until this body is dropped.
pub struct VerifiedBody {
    frames: Frames,
    remaining: usize,
    trailers: Option<HeaderMap>,
    _permit: Option<BudgetPermit>,
}

impl VerifiedBody {
    pub(crate) fn new(
        frames: Frames,
        len: usize,
        trailers: Option<HeaderMap>,
        permit: BudgetPermit,
    ) -> Self {
        Self {
            frames,
            remaining: len,
            trailers,
            _permit: Some(permit),
        }
    }

    /// A verified body from bytes already at hand (e.g. in tests of an inner service).
    #[must_use]
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let mut frames = Frames::default();
        let len = bytes.len();
        frames.push(bytes);
        Self {
            frames,
            remaining: len,
            trailers: None,
            _permit: None,
        }
    }

    /// A verified body in these frames (tests of a consumer of bodies in several frames).
    #[cfg(test)]
    pub(crate) fn from_frames(frames: impl IntoIterator<Item = Bytes>) -> Self {
        let mut all = Frames::default();
        let mut len = 0;
        for frame in frames {
            len += frame.len();
            all.push(frame);
        }
        Self {
            frames: all,
            remaining: len,
            trailers: None,
            _permit: None,
        }
    }

    /// The number of body bytes not yet polled out.
    #[must_use]
    pub fn len(&self) -> usize {
        self.remaining
    }

    /// Whether no body bytes remain.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The remaining frames.
    pub fn frames(&self) -> impl Iterator<Item = &Bytes> {
        self.frames.iter()
    }

    /// The trailers the request carried, if any.
    #[must_use]
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// The remaining bytes as one `Bytes`: no copy when the body arrived in one frame.
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        match &self.frames {
            Frames::Empty => Bytes::new(),
            Frames::One(bytes) => bytes.clone(),
            Frames::Many(frames) => {
                let mut all = BytesMut::with_capacity(self.remaining);
                frames.iter().for_each(|f| all.extend_from_slice(f));
                all.freeze()
            }
        }
    }

    /// The remaining bytes as one `Bytes`, kept as the body's one frame: a body that arrived
    /// in several frames is copied once, here, and every later [`to_bytes`](Self::to_bytes)
    /// is free. The budget permit and the trailers stay.
    #[cfg(any(feature = "dedupe", feature = "elevenlabs"))]
    pub(crate) fn make_contiguous(&mut self) -> Bytes {
        if let Frames::Many(_) = self.frames {
            // `Many` holds at least two non-empty frames: `One` is what it becomes.
            self.frames = Frames::One(self.to_bytes());
        }
        self.to_bytes()
    }
}

impl Body for VerifiedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.frames.pop_front() {
            self.remaining -= data.len();
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining as u64)
    }
}

impl fmt::Debug for VerifiedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedBody")
            .field("len", &self.remaining)
            .field("frames", &self.frames.iter().count())
            .field("trailers", &self.trailers.is_some())
            .finish()
    }
}

/// Received frames; one frame, the common case, needs no allocation.
#[derive(Default)]
pub(crate) enum Frames {
    #[default]
    Empty,
    One(Bytes),
    Many(VecDeque<Bytes>),
}

/// At most this many frames are made room for at once from a declared length: a forged
/// `Content-Length` reserves no more than this (2 KiB) before any byte arrives.
const MAX_PRESIZED_FRAMES: u64 = 64;

impl Frames {
    pub(crate) fn push(&mut self, bytes: Bytes) {
        self.push_expecting(bytes, 0);
    }

    /// Pushes a frame of a body declared `expected` bytes long: at the second frame, room is
    /// made for as many frames of the first one's size as the declared length takes (at most
    /// [`MAX_PRESIZED_FRAMES`]), so that the list does not grow frame by frame.
    pub(crate) fn push_expecting(&mut self, bytes: Bytes, expected: u64) {
        if bytes.is_empty() {
            return;
        }
        *self = match std::mem::take(self) {
            Self::Empty => Self::One(bytes),
            Self::One(first) => {
                // `first` is never empty: empty frames are never kept.
                let frames = expected
                    .div_ceil(first.len() as u64)
                    .clamp(2, MAX_PRESIZED_FRAMES);
                let mut many = VecDeque::with_capacity(frames as usize);
                many.push_back(first);
                many.push_back(bytes);
                Self::Many(many)
            }
            Self::Many(mut frames) => {
                frames.push_back(bytes);
                Self::Many(frames)
            }
        };
    }

    fn pop_front(&mut self) -> Option<Bytes> {
        match std::mem::take(self) {
            Self::Empty => None,
            Self::One(bytes) => Some(bytes),
            Self::Many(mut frames) => {
                let first = frames.pop_front();
                if !frames.is_empty() {
                    *self = Self::Many(frames);
                }
                first
            }
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    fn iter(&self) -> impl Iterator<Item = &Bytes> {
        let (one, many) = match self {
            Self::Empty => (None, None),
            Self::One(bytes) => (Some(bytes), None),
            Self::Many(frames) => (None, Some(frames.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn frames_come_out_as_they_went_in_without_copies() {
        let a = Bytes::from_static(b"hello ");
        let b = Bytes::from_static(b"world");
        let mut frames = Frames::default();
        frames.push(a.clone());
        frames.push(Bytes::new());
        frames.push(b.clone());
        let budget = super::super::BufferBudget::new(100);
        let mut body = VerifiedBody::new(frames, 11, None, budget.permit());
        assert_eq!(body.len(), 11);
        assert_eq!(body.to_bytes(), "hello world");
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(
            first.as_ptr(),
            a.as_ptr(),
            "the same allocation, not a copy"
        );
        assert_eq!(body.len(), 5);
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(second.as_ptr(), b.as_ptr());
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn single_frame_to_bytes_is_zero_copy_and_trailers_follow_data() {
        let data = Bytes::from_static(b"x");
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let mut frames = Frames::default();
        frames.push(data.clone());
        let body = VerifiedBody::new(
            frames,
            1,
            Some(trailers),
            super::super::BufferBudget::new(1).permit(),
        );
        assert_eq!(body.to_bytes().as_ptr(), data.as_ptr());
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), "x");
    }

    /// What a forwarding handler relies on: the size hint is exact (so the request keeps its
    /// `Content-Length`), and the stream ends only after its last frame, trailers included.
    #[tokio::test]
    async fn size_hint_len_and_end_of_stream_follow_what_is_left() {
        let mut frames = Frames::default();
        frames.push(Bytes::from_static(b"abc"));
        frames.push(Bytes::from_static(b"de"));
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        let budget = super::super::BufferBudget::new(5);
        let mut body = VerifiedBody::new(frames, 5, Some(trailers), budget.permit());
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.size_hint().lower(), 5);
        assert_eq!(body.len(), 5);
        assert!(!body.is_empty());
        assert!(!body.is_end_stream());
        assert_eq!(body.trailers().unwrap()["x-checksum"], "abc");

        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "abc");
        assert_eq!(body.size_hint().exact(), Some(2));
        assert_eq!(body.len(), 2);
        assert!(!body.is_empty());
        assert!(!body.is_end_stream());
        assert_eq!(body.to_bytes(), "de", "only what is left");
        assert_eq!(body.frames().count(), 1);

        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(second, "de");
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.is_empty());
        assert_eq!(body.to_bytes(), "");
        assert!(!body.is_end_stream(), "the trailers are still to come");
        assert_eq!(body.trailers().unwrap()["x-checksum"], "abc");

        let last = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        assert_eq!(last["x-checksum"], "abc");
        assert_eq!(last.len(), 1);
        assert!(body.is_end_stream());
        assert!(body.trailers().is_none(), "handed out with the last frame");
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_body_without_trailers_ends_with_its_last_data_frame() {
        let mut body = VerifiedBody::from_bytes("xyz");
        assert_eq!(body.size_hint().exact(), Some(3));
        assert_eq!(body.len(), 3);
        assert!(!body.is_empty());
        assert!(!body.is_end_stream());
        assert!(body.trailers().is_none());
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data, "xyz");
        assert!(body.is_end_stream());
        assert!(body.is_empty());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.frame().await.is_none());
    }

    #[test]
    fn debug_shows_counts_not_bytes() {
        let mut frames = Frames::default();
        frames.push(Bytes::from_static(b"top secret "));
        frames.push(Bytes::from_static(b"payload"));
        let body = VerifiedBody::new(
            frames,
            18,
            Some(HeaderMap::new()),
            super::super::BufferBudget::new(18).permit(),
        );
        let debug = format!("{body:?}");
        assert_eq!(debug, "VerifiedBody { len: 18, frames: 2, trailers: true }");
    }

    #[test]
    fn room_for_the_declared_frames_is_made_at_the_second_frame() {
        let frame = Bytes::from_static(&[7; 16]);
        let many = |expected: u64, count: usize| {
            let mut frames = Frames::default();
            for _ in 0..count {
                frames.push_expecting(frame.clone(), expected);
            }
            match frames {
                Frames::Many(frames) => frames,
                _ => panic!("{count} frames are many"),
            }
        };
        // 64 bytes in frames of 16: four frames, no growth.
        let frames = many(64, 4);
        assert_eq!(frames.len(), 4);
        assert!(frames.capacity() >= 4);
        assert!(frames.capacity() < 8, "{}", frames.capacity());
        // 65 bytes: a fifth, shorter frame is expected.
        assert!(many(65, 2).capacity() >= 5);
        assert!(many(65, 2).capacity() < 8);
        // Nothing declared, or less than two frames: room for the two that came.
        assert!(many(0, 2).capacity() < 4);
        assert!(many(16, 2).capacity() < 4);
        // A huge declared length reserves only a bounded list.
        let huge = many(u64::MAX, 2);
        assert!(huge.capacity() >= 64);
        assert!(huge.capacity() < 128, "{}", huge.capacity());
        assert!(many(64 * 16, 2).capacity() >= 64);
        // The frames are those pushed, in order, with `push` too.
        let mut frames = Frames::default();
        frames.push(Bytes::from_static(b"a"));
        frames.push(Bytes::from_static(b"b"));
        frames.push(Bytes::from_static(b"c"));
        assert_eq!(frames.iter().cloned().collect::<Vec<_>>(), ["a", "b", "c"]);
        let body = VerifiedBody::from_frames(
            [b"a", b"b", b"c"].map(|f: &'static [u8; 1]| Bytes::from_static(f)),
        );
        assert_eq!((body.len(), body.frames().count()), (3, 3));
        assert_eq!(body.to_bytes(), "abc");
    }

    #[tokio::test]
    async fn empty_body_is_empty() {
        let body = VerifiedBody::from_bytes(Bytes::new());
        assert!(body.is_empty());
        assert!(body.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "");
    }
}

#[cfg(all(test, any(feature = "dedupe", feature = "elevenlabs")))]
mod contiguous_tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn several_frames_become_one_and_the_rest_stays() {
        let mut frames = Frames::default();
        frames.push(Bytes::from_static(b"hello "));
        frames.push(Bytes::from_static(b"world"));
        let mut trailers = HeaderMap::new();
        trailers.insert("x-t", "1".parse().unwrap());
        let budget = super::super::BufferBudget::new(11);
        let mut permit = budget.permit();
        assert!(permit.cover(11));
        let mut body = VerifiedBody::new(frames, 11, Some(trailers), permit);
        let all = body.make_contiguous();
        assert_eq!(all, "hello world");
        assert_eq!(body.frames().count(), 1);
        assert_eq!(body.to_bytes().as_ptr(), all.as_ptr(), "no second copy");
        assert_eq!(body.len(), 11);
        assert_eq!(budget.in_use(), 11, "the permit is kept");
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-t"], "1");
        assert_eq!(collected.to_bytes(), "hello world");
        assert_eq!(budget.in_use(), 0, "given back with the body");
    }

    #[test]
    fn one_frame_is_left_as_it_is() {
        let data = Bytes::from_static(b"x");
        let mut body = VerifiedBody::from_bytes(data.clone());
        assert_eq!(body.make_contiguous().as_ptr(), data.as_ptr());
        assert_eq!(VerifiedBody::from_bytes(Bytes::new()).make_contiguous(), "");
    }
}
