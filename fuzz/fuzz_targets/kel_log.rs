//! Key event log files: decode and verify never panic; decoded logs re-encode identically.
#![no_main]
use cairn_wallet::KeyEventLog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = KeyEventLog::decode(data) {
        assert_eq!(log.encode(), data);
        let _ = log.verify();
    }
});
