//! Reads the string fields of a JSON object, as a `#[derive(Deserialize)]` struct of
//! `Option<String>` fields would (other fields skipped without being kept, a field given
//! twice an error, `null` as absent), without the derive macro in the build. One
//! difference: a derived struct also reads a JSON array as its fields in order; this
//! reads objects only (a server's array sets no field).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};

/// The named fields of the JSON object in `json`, in the order of `names`: `Ok` with
/// each one's text (`None` when absent or `null`), or the error of a payload that is not
/// one JSON object or has one of the fields twice or not as a string.
pub(crate) fn string_fields<const N: usize>(
    json: &[u8],
    names: [&'static str; N],
) -> Result<[Option<String>; N], serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let fields = Fields(names).deserialize(&mut de)?;
    de.end()?;
    Ok(fields)
}

struct Fields<const N: usize>([&'static str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for Fields<N> {
    type Value = [Option<String>; N];

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Fields<N> {
    type Value = [Option<String>; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: [Option<Option<String>>; N] = std::array::from_fn(|_| None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.0.iter().position(|n| *n == key) {
                Some(at) => {
                    if out[at].is_some() {
                        return Err(A::Error::duplicate_field(self.0[at]));
                    }
                    out[at] = Some(map.next_value::<Option<String>>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out.map(Option::flatten))
    }
}

#[cfg(test)]
mod tests {
    use super::string_fields;

    #[test]
    fn reads_like_a_derived_struct_of_optional_strings() {
        let read = |json: &str| string_fields(json.as_bytes(), ["a", "b"]).ok();
        assert_eq!(
            read(r#"{"a":"x","skip":{"deep":[1,2,{"a":3}]},"b":null}"#),
            Some([Some("x".to_owned()), None])
        );
        assert_eq!(
            read(r#" {"b":"y\u0021"} "#),
            Some([None, Some("y!".to_owned())])
        );
        assert_eq!(read("{}"), Some([None, None]));
        // Not an object (an array is not read as the fields in order), a field twice, a
        // field that is not a string, trailing bytes.
        for bad in [
            "[]",
            r#"["x","y"]"#,
            "\"a\"",
            "not json",
            r#"{"a":"x","a":"y"}"#,
            r#"{"a":1}"#,
            "{} {}",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }
}
