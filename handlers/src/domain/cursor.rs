//! Opaque page cursors: `?cursor=` in, `"cursor"` out. A cursor encodes the last sort key of a page;
//! clients must not interpret it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::AppError;

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 100;

/// Where a page starts and how long it may be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Exclusive start: the sort key of the last item of the previous page.
    pub after: Option<String>,
    pub limit: usize,
}

/// One page of results, newest first, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

pub fn encode_cursor(sort_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(sort_key.as_bytes())
}

pub fn decode_cursor(cursor: &str) -> Result<String, AppError> {
    let invalid = || {
        AppError::bad_request(
            "Invalid cursor: pass back the cursor value of a previous page unchanged",
        )
    };
    if cursor.len() > 512 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let key = String::from_utf8(bytes).map_err(|_| invalid())?;
    if !key.starts_with("NOTE#") {
        return Err(invalid());
    }
    Ok(key)
}

impl PageRequest {
    /// From the query string of a list route: `cursor` and `limit` (1–100, default 50).
    pub fn from_query(
        cursor: Option<&str>,
        limit: Option<&str>,
        default_limit: usize,
    ) -> Result<Self, AppError> {
        let limit = match limit {
            None => default_limit,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(AppError::bad_request(format!(
                        "Invalid limit: expected a whole number from 1 to {MAX_PAGE_SIZE}"
                    )));
                }
            },
        };
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(decode_cursor)
            .transpose()?;
        Ok(Self { after, limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_junk() {
        let key = "NOTE#2023-11-14T22:13:20.123Z#1700000000123-abc1234";
        assert_eq!(decode_cursor(&encode_cursor(key)).unwrap(), key);
        assert!(decode_cursor("%%%").is_err());
        assert!(decode_cursor(&encode_cursor("USER#x")).is_err());
        assert_eq!(PageRequest::from_query(None, None, 50).unwrap().limit, 50);
        assert!(PageRequest::from_query(None, Some("0"), 50).is_err());
        assert!(PageRequest::from_query(None, Some("abc"), 50).is_err());
    }
}
