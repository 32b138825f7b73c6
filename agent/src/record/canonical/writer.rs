//! Writes any `Serialize` value straight in the [canonical](super)
//! encoding: members of every struct and map sorted by key, no whitespace,
//! serde_json's string escaping. The record builder writes records this
//! way, so the sealer can hash a record's bytes as they are instead of
//! parsing the line back into a `Value` and encoding it again (that round
//! trip was the largest cost per record in the delivery thread).
//!
//! Members that arrive in key order, and arrays and scalars, go straight to
//! the output; an object whose members arrive out of order is buffered and
//! written sorted when it ends.

use serde::{
    Serialize,
    ser::{self, Impossible},
};
use serde_json::Error;

/// Appends the canonical encoding of `value` to `out`.
pub fn to_writer<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(Writer { out })
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

fn string(out: &mut Vec<u8>, s: &str) {
    super::encode_str(s, out);
}

fn number(out: &mut Vec<u8>, n: impl Serialize) {
    // serde_json prints integers in plain decimal, as the definition says.
    serde_json::to_writer(&mut *out, &n)
        .expect("invariant: writing a number into a Vec never fails");
}

/// An object under construction. Members that arrive in key order (most
/// structs declare their fields sorted for this) go straight to the
/// output; at the first one out of order, those written so far move to a
/// scratch buffer, and the object is written sorted at the end.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    /// Where this object's `{` is in `out`.
    open_at: usize,
    /// `None` while members stream to `out`; then the buffered values.
    scratch: Option<Vec<u8>>,
    /// Keys and value ranges, in `out` while streaming, else in `scratch`.
    members: Vec<(Key, usize, usize)>,
    /// Key of the map entry whose value comes next.
    pending: Option<Key>,
}

enum Key {
    Static(&'static str),
    Owned(String),
}

impl Key {
    fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Owned(s) => s,
        }
    }
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>, len: usize) -> Self {
        let open_at = out.len();
        out.push(b'{');
        Self {
            out,
            open_at,
            scratch: None,
            members: Vec::with_capacity(len),
            pending: None,
        }
    }

    fn value<T: Serialize + ?Sized>(&mut self, key: Key, value: &T) -> Result<(), Error> {
        if self.scratch.is_none() {
            let in_order = self.members.last().is_none_or(|(last, _, _)| {
                super::jcs::key_order(last.as_str().as_bytes(), key.as_str().as_bytes()).is_lt()
            });
            if in_order {
                if !self.members.is_empty() {
                    self.out.push(b',');
                }
                string(self.out, key.as_str());
                self.out.push(b':');
                let start = self.out.len();
                value.serialize(Writer {
                    out: &mut *self.out,
                })?;
                self.members.push((key, start, self.out.len()));
                return Ok(());
            }
            self.scratch = Some(self.take_streamed());
        }
        let scratch = self.scratch.get_or_insert_with(Vec::new);
        let start = scratch.len();
        value.serialize(Writer { out: scratch })?;
        self.members.push((key, start, scratch.len()));
        Ok(())
    }

    /// Moves the values streamed so far into a new scratch buffer and takes
    /// the object back out of `out`.
    fn take_streamed(&mut self) -> Vec<u8> {
        let mut scratch = Vec::with_capacity(self.out.len() - self.open_at + 256);
        for (_, start, end) in &mut self.members {
            let from = *start..*end;
            *start = scratch.len();
            scratch.extend_from_slice(&self.out[from]);
            *end = scratch.len();
        }
        self.out.truncate(self.open_at);
        scratch
    }

    /// Writes the object; hands back the output (to close a variant).
    fn finish(mut self) -> &'a mut Vec<u8> {
        match self.scratch.take() {
            None => self.out.push(b'}'),
            Some(scratch) => super::write_object(
                &mut self.members,
                |(k, _, _)| k.as_str(),
                |&(_, start, end), out| out.extend_from_slice(&scratch[start..end]),
                self.out,
            ),
        }
        self.out
    }
}

/// An array: items go straight to the output.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Closing bytes (`]`, or `]}` for an enum's tuple variant).
    close: &'static [u8],
}

impl Array<'_> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Writer { out: self.out })
    }
}

fn key_error() -> Error {
    ser::Error::custom("canonical JSON: a map key must be a string")
}

/// Integer methods of [`Writer`]: plain decimal.
macro_rules! integers {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<(), Error> {
            number(self.out, v);
            Ok(())
        }
    )*};
}

/// [`KeyWriter`] methods for keys written as their decimal or text form.
macro_rules! key_from_display {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<String, Error> {
            Ok(v.to_string())
        }
    )*};
}

/// [`KeyWriter`] methods for types that cannot be a key.
macro_rules! not_a_key {
    ($($f:ident($($t:ty)?)),*) => {$(
        fn $f(self $(, _: $t)?) -> Result<String, Error> {
            Err(key_error())
        }
    )*};
}

/// Tuples of every kind are written as arrays.
macro_rules! array_like {
    ($($tr:ident: $m:ident),*) => {$(
        impl ser::$tr for Array<'_> {
            type Ok = ();
            type Error = Error;
            fn $m<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.item(value)
            }
            fn end(self) -> Result<(), Error> {
                ser::SerializeSeq::end(self)
            }
        }
    )*};
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Variant<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    integers!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64
    );
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        // As `canonical::encode` prints a `Value` number.
        if !v.is_finite() {
            return Err(ser::Error::custom("canonical JSON: NaN or infinity"));
        }
        super::jcs::write_f64(v, self.out);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        string(self.out, v.encode_utf8(&mut [0u8; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        // As serde_json: an array of numbers.
        let mut a = self.serialize_seq(Some(v.len()))?;
        for b in v {
            ser::SerializeSeq::serialize_element(&mut a, b)?;
        }
        ser::SerializeSeq::end(a)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        // A one-member object: already in order.
        self.out.push(b'{');
        string(self.out, variant);
        self.out.push(b':');
        value.serialize(Writer { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, Error> {
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            first: true,
            close: b"]",
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Array<'a>, Error> {
        self.out.push(b'{');
        string(self.out, variant);
        self.out.extend_from_slice(b":[");
        Ok(Array {
            out: self.out,
            first: true,
            close: b"]}",
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(Object::new(self.out, len.unwrap_or(8)))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a>, Error> {
        Ok(Object::new(self.out, len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<'a>, Error> {
        let Writer { out } = self;
        out.push(b'{');
        string(out, variant);
        out.push(b':');
        Ok(Variant {
            inner: Object::new(out, len),
        })
    }
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.item(value)
    }
    fn end(self) -> Result<(), Error> {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

array_like!(
    SerializeTuple: serialize_element,
    SerializeTupleStruct: serialize_field,
    SerializeTupleVariant: serialize_field
);

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.pending = Some(Key::Owned(key.serialize(KeyWriter)?));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .pending
            .take()
            .ok_or_else(|| ser::Error::custom("canonical JSON: map value without a key"))?;
        self.value(key, value)
    }
    fn end(self) -> Result<(), Error> {
        let _ = self.finish();
        Ok(())
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.value(Key::Static(key), value)
    }
    fn end(self) -> Result<(), Error> {
        let _ = self.finish();
        Ok(())
    }
}

/// `{"Variant":{...}}`: the inner object, then one more `}`.
struct Variant<'a> {
    inner: Object<'a>,
}

impl ser::SerializeStructVariant for Variant<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.inner.value(Key::Static(key), value)
    }
    fn end(self) -> Result<(), Error> {
        self.inner.finish().push(b'}');
        Ok(())
    }
}

/// Map keys: strings as they are, integers as decimal strings (as serde_json).
struct KeyWriter;

impl ser::Serializer for KeyWriter {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = Impossible<String, Error>;
    type SerializeTuple = Impossible<String, Error>;
    type SerializeTupleStruct = Impossible<String, Error>;
    type SerializeTupleVariant = Impossible<String, Error>;
    type SerializeMap = Impossible<String, Error>;
    type SerializeStruct = Impossible<String, Error>;
    type SerializeStructVariant = Impossible<String, Error>;

    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_owned())
    }
    key_from_display!(
        serialize_char: char,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64
    );
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Error> {
        value.serialize(self)
    }
    not_a_key!(
        serialize_bool(bool),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit()
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Error> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Error> {
        Err(key_error())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Error> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_error())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_error())
    }
}
