//! Text or JSON output, and how errors are shown.

/// Where command results go.
pub struct Output {
    /// Print JSON instead of text.
    pub json: bool,
}

impl Output {
    /// One line of text on standard output.
    pub fn line(&self, s: &str) {
        println!("{s}");
    }

    /// A JSON value on standard output.
    pub fn json(&self, v: &serde_json::Value) {
        println!("{v}");
    }

    /// An error: text on standard error, and in JSON mode also a JSON object on
    /// standard output.
    pub fn error(&self, e: &anyhow::Error) {
        let msg = format!("{e:#}");
        if self.json && e.downcast_ref::<Reported>().is_none() {
            println!("{}", serde_json::json!({ "error": msg }));
        }
        eprintln!("error: {msg}");
    }
}

/// An error whose JSON form the command has already printed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);
