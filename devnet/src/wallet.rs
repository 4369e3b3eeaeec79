//! A one-key taproot wallet for the devnet: it receives block rewards and
//! signs key-path spends, so tests and the quick start can move coins. It
//! holds test money only; Cairn's real wallet is the seed's BIP86 wallet.

use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak, TweakedPublicKey, UntweakedPublicKey};
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, taproot, Address, Amount, KnownHrp, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Witness,
};

/// A key and its P2TR (key-path only) address on regtest.
#[derive(Debug, Clone)]
pub struct DevWallet {
    keypair: Keypair,
    internal: UntweakedPublicKey,
}

impl DevWallet {
    /// The wallet of a 32-byte secret (any value but zero and above the curve order).
    pub fn from_secret(secret: [u8; 32]) -> Result<Self, bitcoin::secp256k1::Error> {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&secret)?;
        let keypair = Keypair::from_secret_key(&secp, &sk);
        let (internal, _) = keypair.x_only_public_key();
        Ok(DevWallet { keypair, internal })
    }

    /// The tweaked output key.
    pub fn output_key(&self) -> TweakedPublicKey {
        let secp = Secp256k1::verification_only();
        self.internal.tap_tweak(&secp, None).0
    }

    /// The regtest address.
    pub fn address(&self) -> Address {
        Address::p2tr_tweaked(self.output_key(), KnownHrp::Regtest)
    }

    /// The output script.
    pub fn script_pubkey(&self) -> ScriptBuf {
        self.address().script_pubkey()
    }

    /// A version-2 transaction spending `coins` (all paying this wallet) to
    /// `outputs`, each input signed on the key path (SIGHASH_DEFAULT).
    pub fn spend(&self, coins: &[(OutPoint, TxOut)], outputs: Vec<TxOut>) -> Transaction {
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: coins
                .iter()
                .map(|(op, _)| TxIn {
                    previous_output: *op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        };
        self.sign(&mut tx, coins);
        tx
    }

    /// Signs every input of `tx` on the key path; `coins` are the spent outputs in input order.
    pub fn sign(&self, tx: &mut Transaction, coins: &[(OutPoint, TxOut)]) {
        let secp = Secp256k1::new();
        let tweaked = self.keypair.tap_tweak(&secp, None).to_keypair();
        let prevouts: Vec<TxOut> = coins.iter().map(|(_, o)| o.clone()).collect();
        let mut sigs = Vec::with_capacity(tx.input.len());
        {
            let mut cache = SighashCache::new(&*tx);
            for i in 0..prevouts.len() {
                let hash = cache
                    .taproot_key_spend_signature_hash(
                        i,
                        &Prevouts::All(&prevouts),
                        TapSighashType::Default,
                    )
                    .unwrap_or_else(|_| unreachable!("one prevout per input"));
                let msg = Message::from_digest(hash.to_byte_array());
                sigs.push(secp.sign_schnorr_no_aux_rand(&msg, &tweaked));
            }
        }
        for (input, signature) in tx.input.iter_mut().zip(sigs) {
            input.witness = Witness::p2tr_key_spend(&taproot::Signature {
                signature,
                sighash_type: TapSighashType::Default,
            });
        }
    }

    /// Pays `amount` to `to` from `coin`, with `fee`, change back to this wallet.
    pub fn pay(
        &self,
        coin: (OutPoint, TxOut),
        to: ScriptBuf,
        amount: Amount,
        fee: Amount,
    ) -> Transaction {
        let mut outputs = vec![TxOut {
            value: amount,
            script_pubkey: to,
        }];
        let change = coin
            .1
            .value
            .checked_sub(amount + fee)
            .unwrap_or(Amount::ZERO);
        if change > Amount::from_sat(1_000) {
            outputs.push(TxOut {
                value: change,
                script_pubkey: self.script_pubkey(),
            });
        }
        self.spend(&[coin], outputs)
    }
}
