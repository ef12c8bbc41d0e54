//! `Serialize` and `Deserialize` for [`DeadLetter`], written out (the same format as the
//! derived ones: a struct of its fields in declaration order, the payload in base64) so
//! that the default build needs no derive macro.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use super::DeadLetter;

const FIELDS: &[&str] = &[
    "id",
    "function_name",
    "qualifier",
    "payload",
    "client_context",
    "tenant_id",
    "error_type",
    "error",
    "attempts",
    "may_have_run",
    "started_at_ms",
    "failed_at_ms",
];

impl Serialize for DeadLetter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("DeadLetter", FIELDS.len())?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("function_name", &self.function_name)?;
        st.serialize_field("qualifier", &self.qualifier)?;
        st.serialize_field(
            "payload",
            &base64::engine::general_purpose::STANDARD.encode(&self.payload),
        )?;
        st.serialize_field("client_context", &self.client_context)?;
        st.serialize_field("tenant_id", &self.tenant_id)?;
        st.serialize_field("error_type", &self.error_type)?;
        st.serialize_field("error", &self.error)?;
        st.serialize_field("attempts", &self.attempts)?;
        st.serialize_field("may_have_run", &self.may_have_run)?;
        st.serialize_field("started_at_ms", &self.started_at_ms)?;
        st.serialize_field("failed_at_ms", &self.failed_at_ms)?;
        st.end()
    }
}

/// The payload: base64 text.
struct Payload(Bytes);

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(|b| Payload(Bytes::from(b)))
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for DeadLetter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct("DeadLetter", FIELDS, LetterVisitor)
    }
}

struct LetterVisitor;

/// Each field as it is read: `None` until seen.
#[derive(Default)]
struct Seen {
    id: Option<String>,
    function_name: Option<String>,
    qualifier: Option<Option<String>>,
    payload: Option<Payload>,
    client_context: Option<Option<String>>,
    tenant_id: Option<Option<String>>,
    error_type: Option<String>,
    error: Option<String>,
    attempts: Option<u32>,
    may_have_run: Option<String>,
    started_at_ms: Option<u64>,
    failed_at_ms: Option<u64>,
}

fn required<T, E: de::Error>(v: Option<T>, name: &'static str) -> Result<T, E> {
    v.ok_or_else(|| E::missing_field(name))
}

fn once<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl Seen {
    fn letter<E: de::Error>(self) -> Result<DeadLetter, E> {
        Ok(DeadLetter {
            id: required(self.id, "id")?,
            function_name: required(self.function_name, "function_name")?,
            qualifier: self.qualifier.flatten(),
            payload: required(self.payload, "payload")?.0,
            client_context: self.client_context.flatten(),
            tenant_id: self.tenant_id.flatten(),
            error_type: required(self.error_type, "error_type")?,
            error: required(self.error, "error")?,
            attempts: required(self.attempts, "attempts")?,
            may_have_run: required(self.may_have_run, "may_have_run")?,
            started_at_ms: required(self.started_at_ms, "started_at_ms")?,
            failed_at_ms: required(self.failed_at_ms, "failed_at_ms")?,
        })
    }
}

impl<'de> Visitor<'de> for LetterVisitor {
    type Value = DeadLetter;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct DeadLetter")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DeadLetter, A::Error> {
        let mut s = Seen::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "id" => once(&mut s.id, "id", &mut map)?,
                "function_name" => once(&mut s.function_name, "function_name", &mut map)?,
                "qualifier" => once(&mut s.qualifier, "qualifier", &mut map)?,
                "payload" => once(&mut s.payload, "payload", &mut map)?,
                "client_context" => once(&mut s.client_context, "client_context", &mut map)?,
                "tenant_id" => once(&mut s.tenant_id, "tenant_id", &mut map)?,
                "error_type" => once(&mut s.error_type, "error_type", &mut map)?,
                "error" => once(&mut s.error, "error", &mut map)?,
                "attempts" => once(&mut s.attempts, "attempts", &mut map)?,
                "may_have_run" => once(&mut s.may_have_run, "may_have_run", &mut map)?,
                "started_at_ms" => once(&mut s.started_at_ms, "started_at_ms", &mut map)?,
                "failed_at_ms" => once(&mut s.failed_at_ms, "failed_at_ms", &mut map)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        s.letter()
    }

    // Formats that write a struct as a sequence of its fields (bincode, postcard...).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DeadLetter, A::Error> {
        fn next<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(
            seq: &mut A,
            at: usize,
        ) -> Result<T, A::Error> {
            seq.next_element()?
                .ok_or_else(|| de::Error::invalid_length(at, &"struct DeadLetter with 12 elements"))
        }
        Ok(DeadLetter {
            id: next(&mut seq, 0)?,
            function_name: next(&mut seq, 1)?,
            qualifier: next(&mut seq, 2)?,
            payload: next::<Payload, _>(&mut seq, 3)?.0,
            client_context: next(&mut seq, 4)?,
            tenant_id: next(&mut seq, 5)?,
            error_type: next(&mut seq, 6)?,
            error: next(&mut seq, 7)?,
            attempts: next(&mut seq, 8)?,
            may_have_run: next(&mut seq, 9)?,
            started_at_ms: next(&mut seq, 10)?,
            failed_at_ms: next(&mut seq, 11)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::DeadLetter;
    use bytes::Bytes;

    fn letter() -> DeadLetter {
        DeadLetter {
            id: "0b9f8c1e-4d3a-4f6b-9c2d-1e5a7b3c9d10".to_owned(),
            function_name: "orders".to_owned(),
            qualifier: Some("prod".to_owned()),
            payload: Bytes::from_static(b"{\"n\":1}\xff"),
            client_context: None,
            tenant_id: Some("t-1".to_owned()),
            error_type: "ServiceException".to_owned(),
            error: "boom \"quoted\"".to_owned(),
            attempts: 3,
            may_have_run: "Unknown".to_owned(),
            started_at_ms: 1_764_000_000_000,
            failed_at_ms: 1_764_000_000_123,
        }
    }

    // The spool's format, as the derived implementations wrote and read it.
    const JSON: &str = concat!(
        r#"{"id":"0b9f8c1e-4d3a-4f6b-9c2d-1e5a7b3c9d10","function_name":"orders","#,
        r#""qualifier":"prod","payload":"eyJuIjoxff8=","client_context":null,"#,
        r#""tenant_id":"t-1","error_type":"ServiceException","error":"boom \"quoted\"","#,
        r#""attempts":3,"may_have_run":"Unknown","started_at_ms":1764000000000,"#,
        r#""failed_at_ms":1764000000123}"#
    );

    #[test]
    fn writes_and_reads_the_spool_format() {
        assert_eq!(serde_json::to_string(&letter()).ok().as_deref(), Some(JSON));
        assert_eq!(
            serde_json::from_str::<DeadLetter>(JSON).ok(),
            Some(letter())
        );
    }

    #[test]
    fn reads_as_a_derived_struct_would() {
        // Unknown fields skipped; optional fields absent or null.
        let sparse = r#"{"failed_at_ms":2,"started_at_ms":1,"may_have_run":"NotRun","attempts":1,
            "error":"e","error_type":"T","payload":"","function_name":"f","id":"i",
            "future_field":{"nested":[1,2]},"qualifier":null}"#;
        let l = serde_json::from_str::<DeadLetter>(sparse).ok();
        assert_eq!(
            l.as_ref()
                .map(|l| (l.qualifier.clone(), l.tenant_id.clone())),
            Some((None, None))
        );
        assert_eq!(l.map(|l| l.payload), Some(Bytes::new()));
        // The sequence form (formats without field names).
        let seq = r#"["i","f",null,"AA==",null,null,"T","e",1,"NotRun",1,2]"#;
        assert_eq!(
            serde_json::from_str::<DeadLetter>(seq)
                .map(|l| l.payload)
                .ok(),
            Some(Bytes::from_static(b"\0"))
        );
        // A missing required field, a field twice, bad base64, a short sequence.
        let missing = JSON.replace(r#""attempts":3,"#, "");
        let twice = JSON.replace(r#""attempts":3,"#, r#""attempts":3,"attempts":4,"#);
        let bad = JSON.replace("eyJuIjoxff8=", "not base64!");
        for (what, json) in [
            ("missing", missing.as_str()),
            ("twice", &twice),
            ("bad", &bad),
            ("short", r#"["i","f"]"#),
        ] {
            let err = serde_json::from_str::<DeadLetter>(json)
                .err()
                .map(|e| e.to_string());
            assert!(err.is_some(), "{what} must fail");
        }
        let err = serde_json::from_str::<DeadLetter>(&missing)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("missing field `attempts`")));
        let err = serde_json::from_str::<DeadLetter>(&twice)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("duplicate field `attempts`")));
    }
}
