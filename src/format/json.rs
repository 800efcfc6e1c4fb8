//! JSON batches (OData 4.01 JSON batch / Microsoft Graph `$batch`).

use bytes::Bytes;

use super::{DecodeContext, Encoder, Format};
use crate::error::BatchError;
use crate::item::Item;

/// The JSON batch format.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json {
    _priv: (),
}

impl Json {
    /// The JSON format.
    pub fn new() -> Self {
        Json { _priv: () }
    }
}

impl Format for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn content_types(&self) -> Vec<String> {
        vec!["application/json".to_owned()]
    }

    fn accepts(&self, content_type: &mime::Mime) -> bool {
        content_type.essence_str() == "application/json"
    }

    fn decode(&self, _cx: &DecodeContext<'_>, _body: Bytes) -> Result<Vec<Item>, BatchError> {
        Err(BatchError::Malformed {
            reason: "JSON batches are not available yet".into(),
        })
    }

    fn encoder(&self, _cx: &DecodeContext<'_>) -> Box<dyn Encoder> {
        unimplemented!("JSON encoder")
    }
}
