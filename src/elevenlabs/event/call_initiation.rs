//! `call_initiation_failure`: an outbound call that never connected.

use std::borrow::Cow;

use serde::{de::MapAccess, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::lenient::{
    accept, lenient_str_enum, lenient_struct, next_key, Accept, FieldDe, Lenient, Seed, ToStatic,
};

lenient_struct! {
    /// The `data` of a `call_initiation_failure` event: an outbound call (SIP trunk or Twilio)
    /// that could not be started.
    pub struct CallInitiationFailure<'a> {
        /// The agent that was to hold the call.
        "agent_id" => agent_id: Option<Cow<'a, str>>,
        /// The conversation that was to be.
        "conversation_id" => conversation_id: Option<Cow<'a, str>>,
        /// Why the call failed.
        "failure_reason" => failure_reason: Option<FailureReason<'a>>,
        /// What the telephony provider said.
        "metadata" => metadata: Option<FailureMetadata<'a>>,
    }
}

lenient_str_enum! {
    /// Why a call could not be started.
    pub enum FailureReason<'a> {
        /// The callee was busy.
        "busy" => Busy,
        /// Nobody answered.
        "no-answer" => NoAnswer,
        /// Another reason.
        "unknown" => Unknown,
    }
}

/// The telephony provider's side of a failed call: `{"type": "sip" | "twilio", "body": {...}}`.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct FailureMetadata<'a> {
    /// The provider, as received (`sip`, `twilio`); it decides how `body` is read.
    pub kind: Option<Cow<'a, str>>,
    /// The provider's details.
    pub body: Option<FailureBody<'a>>,
    /// Every other field, as received.
    pub extra: Map<String, Value>,
}

/// The provider's details of a failed call, read as the metadata's `type` says.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FailureBody<'a> {
    /// A call through a SIP trunk.
    Sip(SipFailure<'a>),
    /// A call through Twilio: its status callback's fields.
    Twilio(TwilioFailure<'a>),
    /// Another provider, or a body that is not an object: as received.
    Other(Value),
}

lenient_struct! {
    /// A SIP trunk's account of a failed call.
    pub struct SipFailure<'a> {
        /// The calling number.
        "from_number" => from_number: Option<Cow<'a, str>>,
        /// The number called.
        "to_number" => to_number: Option<Cow<'a, str>>,
        /// The final SIP response code, e.g. 486 (busy here).
        "sip_status_code" => sip_status_code: Option<i64>,
        /// The reason given with it.
        "error_reason" => error_reason: Option<Cow<'a, str>>,
        /// The call's id.
        "call_sid" => call_sid: Option<Cow<'a, str>>,
    }
}

lenient_struct! {
    /// Twilio's status callback fields for a failed call (Twilio sends them as strings; the
    /// rest of Twilio's fields are kept in `extra`).
    pub struct TwilioFailure<'a> {
        /// Twilio's call id (`CallSid`).
        "CallSid" => call_sid: Option<Cow<'a, str>>,
        /// The call's status, e.g. `busy`, `no-answer`, `failed` (`CallStatus`).
        "CallStatus" => call_status: Option<Cow<'a, str>>,
        /// The number called (`To`).
        "To" => to: Option<Cow<'a, str>>,
        /// The calling number (`From`).
        "From" => from: Option<Cow<'a, str>>,
        /// The SIP response code, as text (`SipResponseCode`).
        "SipResponseCode" => sip_response_code: Option<Cow<'a, str>>,
    }
}

#[derive(Clone, Copy)]
enum Provider {
    Sip,
    Twilio,
    Other,
}

impl Provider {
    fn of(kind: Option<&str>) -> Provider {
        match kind {
            Some("sip") => Provider::Sip,
            Some("twilio") => Provider::Twilio,
            _ => Provider::Other,
        }
    }

    /// Reads a body borrowing from the input.
    fn read<'de: 'a, 'a, D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<FailureBody<'a>>, D::Error> {
        let body = match self {
            Provider::Sip => Option::<SipFailure<'a>>::de(deserializer)?
                .map(|sip| sip.map(FailureBody::Sip))
                .unwrap_or_else(|raw| Some(FailureBody::Other(raw))),
            Provider::Twilio => Option::<TwilioFailure<'a>>::de(deserializer)?
                .map(|twilio| twilio.map(FailureBody::Twilio))
                .unwrap_or_else(|raw| Some(FailureBody::Other(raw))),
            Provider::Other => match Value::deserialize(deserializer)? {
                Value::Null => None,
                other => Some(FailureBody::Other(other)),
            },
        };
        Ok(body)
    }
}

impl<'de: 'a, 'a> Accept<'de> for FailureMetadata<'a> {
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Lenient<Self>, A::Error> {
        let mut out = FailureMetadata::default();
        // The body as received when it came before the type.
        let mut early_body = None;
        while let Some(key) = next_key(&mut map)? {
            match key.bytes() {
                b"type" => match map.next_value_seed(Seed::<Option<Cow<'a, str>>>::new())? {
                    Ok(kind) => out.kind = kind,
                    Err(raw) => {
                        out.extra.insert("type".to_owned(), raw);
                    }
                },
                b"body" if out.kind.is_some() => {
                    let provider = Provider::of(out.kind.as_deref());
                    out.body = map.next_value_seed(BodySeed(provider, Default::default()))?;
                    early_body = None;
                }
                b"body" => early_body = Some(map.next_value::<Value>()?),
                _ => {
                    let key = key.into_string()?;
                    let value: Value = map.next_value()?;
                    out.extra.insert(key, value);
                }
            }
        }
        if let Some(body) = early_body {
            // Read from the buffered value: the strings are owned, nothing is lost.
            out.body = Provider::of(out.kind.as_deref())
                .read::<serde_json::Value>(body)
                .unwrap_or(None);
        }
        Ok(Ok(out))
    }
}

struct BodySeed<'a>(Provider, std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::DeserializeSeed<'de> for BodySeed<'a> {
    type Value = Option<FailureBody<'a>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.read(deserializer)
    }
}

impl<'de: 'a, 'a> FieldDe<'de> for FailureMetadata<'a> {
    fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error> {
        accept(deserializer)
    }
}

impl Serialize for FailureMetadata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        if let Some(kind) = &self.kind {
            map.serialize_entry("type", kind)?;
        }
        if let Some(body) = &self.body {
            map.serialize_entry("body", body)?;
        }
        for (key, value) in &self.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl Serialize for FailureBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FailureBody::Sip(sip) => sip.serialize(serializer),
            FailureBody::Twilio(twilio) => twilio.serialize(serializer),
            FailureBody::Other(other) => other.serialize(serializer),
        }
    }
}

impl FailureMetadata<'_> {
    /// The same value, no longer tied to the input's lifetime.
    #[must_use]
    pub fn into_owned(self) -> FailureMetadata<'static> {
        FailureMetadata {
            kind: self.kind.to_static(),
            body: self.body.map(FailureBody::into_owned),
            extra: self.extra,
        }
    }
}

impl FailureBody<'_> {
    /// The same value, no longer tied to the input's lifetime.
    #[must_use]
    pub fn into_owned(self) -> FailureBody<'static> {
        match self {
            FailureBody::Sip(sip) => FailureBody::Sip(sip.into_owned()),
            FailureBody::Twilio(twilio) => FailureBody::Twilio(twilio.into_owned()),
            FailureBody::Other(other) => FailureBody::Other(other),
        }
    }
}

impl ToStatic for FailureMetadata<'_> {
    type Static = FailureMetadata<'static>;

    fn to_static(self) -> Self::Static {
        self.into_owned()
    }
}
