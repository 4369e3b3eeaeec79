//! Contact book entries as read back from the store: decoded or refused,
//! never a panic; what decodes encodes back to the same contact.
#![no_main]
use cairn_node::contact_book::Contact;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Contact::decode(data) {
        let again = Contact::decode(&c.encode()).expect("an encoded contact decodes");
        assert_eq!(again, c);
    }
});
