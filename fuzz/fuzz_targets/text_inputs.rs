//! Text a person or peer types: seed words and identity ids.
#![no_main]
use cairn_wallet::{IdentityId, SeedPhrase};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = SeedPhrase::parse(s);
        if let Ok(id) = s.parse::<IdentityId>() {
            assert_eq!(id.to_string().parse::<IdentityId>().ok(), Some(id));
        }
    }
});
