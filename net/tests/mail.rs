//! The mail protocol's framing: round trips, truncations and bounds.

use cairn_net::mail::*;

#[test]
fn requests_and_responses_round_trip_and_every_byte_counts() {
    let requests = [
        MailRequest::Deliver(vec![vec![1; 40], vec![2; 1056]]),
        MailRequest::Deposit(vec![vec![3; 33]]),
        MailRequest::Collect(vec![[4; 32], [5; 32]]),
        MailRequest::Remove(vec![([6; 32], [7; 32])]),
    ];
    for q in requests {
        let b = q.encode().unwrap();
        assert_eq!(MailRequest::decode(&b).unwrap(), q);
        for cut in 0..b.len() {
            assert!(MailRequest::decode(&b[..cut]).is_err());
        }
        assert!(MailRequest::decode(&[&b[..], &[0]].concat()).is_err());
    }
    let responses = [
        MailResponse::Status(vec![MailStatus::Accepted, MailStatus::Unknown]),
        MailResponse::Envelopes(vec![vec![8; 100]]),
    ];
    for r in responses {
        let b = r.encode().unwrap();
        assert_eq!(MailResponse::decode(&b).unwrap(), r);
        for cut in 0..b.len() {
            assert!(MailResponse::decode(&b[..cut]).is_err());
        }
    }
}

#[test]
fn bounds_hold_both_ways() {
    assert!(MailRequest::Collect(vec![[0; 32]; MAX_BATCH + 1])
        .encode()
        .is_err());
    assert!(MailRequest::Deliver(vec![vec![0; MAX_ENVELOPE + 1]])
        .encode()
        .is_err());
    // 64 of the largest envelopes do not fit one frame.
    assert!(MailRequest::Deposit(vec![vec![0; MAX_ENVELOPE]; MAX_BATCH])
        .encode()
        .is_err());
    let mut b = MailRequest::Collect(vec![]).encode().unwrap();
    b[1..3].copy_from_slice(&(MAX_BATCH as u16 + 1).to_be_bytes());
    assert!(MailRequest::decode(&b).is_err());
    assert!(
        MailResponse::decode(&[1, 0, 1, 9]).is_err(),
        "unknown status"
    );
}
