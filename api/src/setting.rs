//! What every parameter setter of the generated operation builders does
//! (see `safeguard-codegen`'s `setters` pass): one generic function each
//! instead of a closure per setter. Not meant to be called by hand.

/// Converts an optional parameter's value, keeping `message` as the error
/// reported by `send` when the conversion fails.
pub fn optional<T, V: TryInto<T>>(value: V, message: &'static str) -> Result<Option<T>, String> {
    required(value, message).map(Some)
}

/// Converts a required parameter's (or a body's) value, keeping `message`
/// as the error reported by `send` when the conversion fails.
pub fn required<T, V: TryInto<T>>(value: V, message: &'static str) -> Result<T, String> {
    value.try_into().map_err(|_| message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_or_keeps_the_message() {
        assert_eq!(optional::<i32, _>(7i64, "m"), Ok(Some(7)));
        assert_eq!(required::<i32, _>(7u8, "m"), Ok(7));
        assert_eq!(
            optional::<i32, _>(i64::MAX, "conversion to `i32` for limit failed"),
            Err("conversion to `i32` for limit failed".to_owned())
        );
        assert_eq!(required::<u8, _>(-1i32, "m"), Err("m".to_owned()));
        assert_eq!(required::<String, _>("text", "m"), Ok("text".to_owned()));
    }
}
