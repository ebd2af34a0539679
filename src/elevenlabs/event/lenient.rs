//! The lenient serde machinery every event type is built from.
//!
//! A field is read through [`FieldDe`], which answers `Ok(value)` when the JSON has the type the
//! field documents and `Err(raw)` with the value as received when it has not; the struct then
//! keeps `raw` in its `extra` map under the same key. So nothing a sender adds or changes is an
//! error and nothing is lost: only invalid JSON, or an envelope without a `type`, fails to parse.
//!
//! Strings are borrowed from the input whenever serde_json can (no escape sequence in them), so a
//! transcript's words, speaker ids and the base64 audio cost no allocation and no copy.

use std::{borrow::Cow, fmt, marker::PhantomData};

use serde::{
    de::{
        self,
        value::{MapAccessDeserializer, SeqAccessDeserializer},
        DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
    },
    Deserialize, Serialize,
};
use serde_json::{Map, Number, Value};

/// What a field read gives: the typed value, or the JSON value as received when its type is not
/// the documented one.
pub(crate) type Lenient<T> = Result<T, Value>;

/// Reads one field's value, borrowing from the input where it can.
pub(crate) trait FieldDe<'de>: Sized {
    fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error>;
}

/// A [`DeserializeSeed`] reading a `T` through [`FieldDe`].
pub(crate) struct Seed<T>(PhantomData<fn() -> T>);

impl<T> Seed<T> {
    pub(crate) fn new() -> Self {
        Seed(PhantomData)
    }
}

impl<'de, T: FieldDe<'de>> DeserializeSeed<'de> for Seed<T> {
    type Value = Lenient<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Lenient<T>, D::Error> {
        T::de(deserializer)
    }
}

/// The next key of an object.
pub(crate) fn next_key<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Key<'de>>, A::Error> {
    map.next_key_seed(KeySeed)
}

/// An object key as the bytes of its JSON string, escapes resolved, borrowed from the input when
/// it has none. serde_json does not check a key read as bytes for UTF-8, which is a good part
/// of a parse made of many small objects; only a key that is kept (in `extra`) is checked.
pub(crate) struct Key<'de>(Cow<'de, [u8]>);

impl Key<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key as a `String`, to keep it.
    pub(crate) fn into_string<E: de::Error>(self) -> Result<String, E> {
        let text = match self.0 {
            Cow::Borrowed(bytes) => std::str::from_utf8(bytes).map(str::to_owned).ok(),
            Cow::Owned(bytes) => String::from_utf8(bytes).ok(),
        };
        text.ok_or_else(|| E::custom("an object key is not valid UTF-8"))
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        // serde_json's keys read as bytes; other deserializers (a `Value`'s) hand them over as
        // strings.
        deserializer.deserialize_bytes(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v)))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(v.as_bytes())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.as_bytes().to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.into_bytes())))
    }
}

/// What a type accepts, JSON type by JSON type; every default answers "not mine" with the value
/// as received.
pub(crate) trait Accept<'de>: Sized {
    fn string(v: Cow<'de, str>) -> Lenient<Self> {
        Err(Value::String(v.into_owned()))
    }

    fn signed(v: i64) -> Lenient<Self> {
        Err(Value::from(v))
    }

    fn unsigned(v: u64) -> Lenient<Self> {
        Err(Value::from(v))
    }

    fn float(v: f64) -> Lenient<Self> {
        Err(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn boolean(v: bool) -> Lenient<Self> {
        Err(Value::Bool(v))
    }

    fn null() -> Lenient<Self> {
        Err(Value::Null)
    }

    fn object<A: MapAccess<'de>>(map: A) -> Result<Lenient<Self>, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Err)
    }

    fn array<A: SeqAccess<'de>>(seq: A) -> Result<Lenient<Self>, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Err)
    }
}

/// Reads any JSON value and hands it to `T`'s [`Accept`] methods.
pub(crate) fn accept<'de, T: Accept<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Lenient<T>, D::Error> {
    deserializer.deserialize_any(AcceptVisitor(PhantomData))
}

struct AcceptVisitor<T>(PhantomData<fn() -> T>);

impl<'de, T: Accept<'de>> Visitor<'de> for AcceptVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(T::string(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(T::string(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(T::string(Cow::Owned(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(T::signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(T::unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(T::float(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(T::boolean(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(T::null())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(T::null())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::object(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        T::array(seq)
    }
}

/// `FieldDe` through `Accept` for the listed types.
macro_rules! field_de_through_accept {
    ($($ty:ty),* $(,)?) => {$(
        impl<'de> FieldDe<'de> for $ty {
            fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error> {
                accept(deserializer)
            }
        }
    )*};
}

field_de_through_accept!(f64, i64, bool, Map<String, Value>);

impl<'de: 'a, 'a> FieldDe<'de> for Cow<'a, str> {
    fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error> {
        accept(deserializer)
    }
}

impl<'de: 'a, 'a> Accept<'de> for Cow<'a, str> {
    fn string(v: Cow<'de, str>) -> Lenient<Self> {
        Ok(v)
    }
}

/// Seconds, probabilities, costs: an integer or a float, whichever the sender wrote.
impl Accept<'_> for f64 {
    fn signed(v: i64) -> Lenient<Self> {
        Ok(v as f64)
    }

    fn unsigned(v: u64) -> Lenient<Self> {
        Ok(v as f64)
    }

    fn float(v: f64) -> Lenient<Self> {
        Ok(v)
    }
}

/// Indices, offsets, status codes and Unix times: an integer, or a float without a fractional
/// part (`2.0`); anything else is kept as received.
impl Accept<'_> for i64 {
    fn signed(v: i64) -> Lenient<Self> {
        Ok(v)
    }

    fn unsigned(v: u64) -> Lenient<Self> {
        i64::try_from(v).map_err(|_| Value::from(v))
    }

    fn float(v: f64) -> Lenient<Self> {
        // The range check is exclusive at the top: 2^63 itself does not fit.
        if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 {
            Ok(v as i64)
        } else {
            Err(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
    }
}

impl Accept<'_> for bool {
    fn boolean(v: bool) -> Lenient<Self> {
        Ok(v)
    }
}

impl<'de> Accept<'de> for Map<String, Value> {
    fn object<A: MapAccess<'de>>(map: A) -> Result<Lenient<Self>, A::Error> {
        Map::deserialize(MapAccessDeserializer::new(map)).map(Ok)
    }
}

impl<'de> FieldDe<'de> for Value {
    fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error> {
        Value::deserialize(deserializer).map(Ok)
    }
}

/// `null` is `None`; any other value is read as `T`.
impl<'de, T: FieldDe<'de>> FieldDe<'de> for Option<T> {
    fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error> {
        deserializer.deserialize_option(OptionVisitor(PhantomData))
    }
}

struct OptionVisitor<T>(PhantomData<fn() -> T>);

impl<'de, T: FieldDe<'de>> Visitor<'de> for OptionVisitor<T> {
    type Value = Lenient<Option<T>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(None))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Ok(T::de(deserializer)?.map(Some))
    }
}

/// An array of `T`. When one element is not a `T`, the whole array is kept as received (the
/// elements read so far are turned back into JSON), so a field is either all typed or all raw.
impl<'de, T: FieldDe<'de> + Serialize> FieldDe<'de> for Vec<T> {
    fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error> {
        accept(deserializer)
    }
}

impl<'de, T: FieldDe<'de> + Serialize> Accept<'de> for Vec<T> {
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Lenient<Self>, A::Error> {
        // A hint from a hostile sender must not reserve memory the input does not back.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(Seed::<T>::new())? {
            match item {
                Ok(item) => items.push(item),
                Err(raw) => {
                    let mut values: Vec<Value> = items.iter().map(to_value).collect();
                    values.push(raw);
                    while let Some(value) = seq.next_element::<Value>()? {
                        values.push(value);
                    }
                    return Ok(Err(Value::Array(values)));
                }
            }
        }
        Ok(Ok(items))
    }
}

/// A typed value back as JSON. Every type here serializes to JSON without failing (string keys,
/// finite numbers), so the fallback is never taken.
pub(crate) fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Turns a field read into a `Deserialize` result for the types that are also read on their own:
/// a value of the wrong JSON type is an error there, since there is no `extra` to keep it in.
pub(crate) fn required<T, E: de::Error>(read: Lenient<T>, expected: &str) -> Result<T, E> {
    read.map_err(|raw| {
        let kind = match raw {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        E::custom(format_args!("invalid type: {kind}, expected {expected}"))
    })
}

/// A value that can give up its borrows: `into_owned` for every event type.
pub(crate) trait ToStatic {
    type Static: 'static;

    fn to_static(self) -> Self::Static;
}

impl ToStatic for Cow<'_, str> {
    type Static = Cow<'static, str>;

    fn to_static(self) -> Self::Static {
        Cow::Owned(self.into_owned())
    }
}

impl<T: ToStatic> ToStatic for Option<T> {
    type Static = Option<T::Static>;

    fn to_static(self) -> Self::Static {
        self.map(ToStatic::to_static)
    }
}

impl<T: ToStatic> ToStatic for Vec<T> {
    type Static = Vec<T::Static>;

    fn to_static(self) -> Self::Static {
        self.into_iter().map(ToStatic::to_static).collect()
    }
}

macro_rules! to_static_is_identity {
    ($($ty:ty),* $(,)?) => {$(
        impl ToStatic for $ty {
            type Static = $ty;

            fn to_static(self) -> Self {
                self
            }
        }
    )*};
}

to_static_is_identity!(f64, i64, bool, Value, Map<String, Value>);

/// A struct of optional, documented fields plus `extra`, read leniently (see the module docs):
/// `Deserialize`, `Serialize` (known fields that are `Some`, then `extra`), `FieldDe`,
/// `ToStatic` and `into_owned`. Every field is an `Option`; each is given as
/// `"json name" => rust_name: Type`.
macro_rules! lenient_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident<$lt:lifetime> {
            $( $(#[$fmeta:meta])* $json:literal => $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        #[non_exhaustive]
        $vis struct $name<$lt> {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Every other field, as received: fields this version does not know, and known
            /// fields whose value did not have the documented type.
            pub extra: serde_json::Map<String, serde_json::Value>,
        }

        impl<$lt> $name<$lt> {
            /// The same value owning all its strings, no longer tied to the input's lifetime.
            #[must_use]
            $vis fn into_owned(self) -> $name<'static> {
                $name {
                    $( $field: $crate::elevenlabs::event::lenient::ToStatic::to_static(self.$field), )*
                    extra: self.extra,
                }
            }
        }

        impl<$lt> $crate::elevenlabs::event::lenient::ToStatic for $name<$lt> {
            type Static = $name<'static>;

            fn to_static(self) -> Self::Static {
                self.into_owned()
            }
        }

        lenient_struct!(@serde $name [$lt] { $( $json => $field : $ty, )* });
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $json:literal => $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        #[non_exhaustive]
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Every other field, as received: fields this version does not know, and known
            /// fields whose value did not have the documented type.
            pub extra: serde_json::Map<String, serde_json::Value>,
        }

        impl $crate::elevenlabs::event::lenient::ToStatic for $name {
            type Static = $name;

            fn to_static(self) -> Self {
                self
            }
        }

        lenient_struct!(@serde $name [] { $( $json => $field : $ty, )* });
    };
    (@serde $name:ident [$($lt:lifetime)?] { $( $json:literal => $field:ident : $ty:ty, )* }) => {
        impl<'de $(: $lt, $lt)?> $crate::elevenlabs::event::lenient::Accept<'de> for $name $(<$lt>)? {
            fn object<A: serde::de::MapAccess<'de>>(
                mut map: A,
            ) -> Result<$crate::elevenlabs::event::lenient::Lenient<Self>, A::Error> {
                #[allow(unused_mut)]
                let mut out = Self::default();
                while let Some(key) = $crate::elevenlabs::event::lenient::next_key(&mut map)? {
                    $(
                        if key.bytes() == $json.as_bytes() {
                            match map.next_value_seed(
                                $crate::elevenlabs::event::lenient::Seed::<$ty>::new(),
                            )? {
                                Ok(value) => {
                                    out.$field = value;
                                    if !out.extra.is_empty() {
                                        out.extra.remove($json);
                                    }
                                }
                                Err(raw) => {
                                    out.$field = None;
                                    out.extra.insert($json.to_owned(), raw);
                                }
                            }
                            continue;
                        }
                    )*
                    let key = key.into_string()?;
                    let value: serde_json::Value = map.next_value()?;
                    out.extra.insert(key, value);
                }
                Ok(Ok(out))
            }
        }

        impl<'de $(: $lt, $lt)?> $crate::elevenlabs::event::lenient::FieldDe<'de> for $name $(<$lt>)? {
            fn de<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<$crate::elevenlabs::event::lenient::Lenient<Self>, D::Error> {
                $crate::elevenlabs::event::lenient::accept(deserializer)
            }
        }

        impl<'de $(: $lt, $lt)?> serde::Deserialize<'de> for $name $(<$lt>)? {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let read = <Self as $crate::elevenlabs::event::lenient::FieldDe<'de>>::de(deserializer)?;
                $crate::elevenlabs::event::lenient::required(read, "an object")
            }
        }

        impl $(<$lt>)? serde::Serialize for $name $(<$lt>)? {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap as _;
                let mut map = serializer.serialize_map(None)?;
                $(
                    if let Some(value) = &self.$field {
                        map.serialize_entry($json, value)?;
                    }
                )*
                for (key, value) in &self.extra {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    };
}

/// A string with a few documented values and `Other` for the rest, kept as received.
macro_rules! lenient_str_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident<$lt:lifetime> {
            $( $(#[$vmeta:meta])* $json:literal => $variant:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name<$lt> {
            $( $(#[$vmeta])* $variant, )*
            /// A value this version does not know, as received.
            Other(std::borrow::Cow<$lt, str>),
        }

        impl<$lt> $name<$lt> {
            /// The value as it appears in the JSON.
            #[must_use]
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $json, )*
                    Self::Other(other) => other,
                }
            }

            /// The same value, no longer tied to the input's lifetime.
            #[must_use]
            pub fn into_owned(self) -> $name<'static> {
                match self {
                    $( Self::$variant => $name::$variant, )*
                    Self::Other(other) => $name::Other(std::borrow::Cow::Owned(other.into_owned())),
                }
            }
        }

        impl<$lt> From<std::borrow::Cow<$lt, str>> for $name<$lt> {
            fn from(value: std::borrow::Cow<$lt, str>) -> Self {
                match &*value {
                    $( $json => Self::$variant, )*
                    _ => Self::Other(value),
                }
            }
        }

        impl std::fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de: $lt, $lt> $crate::elevenlabs::event::lenient::Accept<'de> for $name<$lt> {
            fn string(value: std::borrow::Cow<'de, str>) -> $crate::elevenlabs::event::lenient::Lenient<Self> {
                Ok(Self::from(value))
            }
        }

        impl<'de: $lt, $lt> $crate::elevenlabs::event::lenient::FieldDe<'de> for $name<$lt> {
            fn de<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<$crate::elevenlabs::event::lenient::Lenient<Self>, D::Error> {
                $crate::elevenlabs::event::lenient::accept(deserializer)
            }
        }

        impl serde::Serialize for $name<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<$lt> $crate::elevenlabs::event::lenient::ToStatic for $name<$lt> {
            type Static = $name<'static>;

            fn to_static(self) -> Self::Static {
                self.into_owned()
            }
        }
    };
}

pub(crate) use {lenient_str_enum, lenient_struct};
