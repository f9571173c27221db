//! Session tokens: `<id>-<secret>`, both random alphanumerics. The id finds
//! the row; only the SHA-256 of the secret is stored, and it is compared in
//! constant time.

use rand::RngExt;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ID_LEN: usize = 10;
const SECRET_LEN: usize = 22;

pub struct Token {
    pub id: String,
    pub secret: String,
}

impl Token {
    pub fn generate() -> Token {
        Token { id: random(ID_LEN), secret: random(SECRET_LEN) }
    }

    /// What the client is given; never stored.
    pub fn to_header_value(&self) -> String {
        format!("{}-{}", self.id, self.secret)
    }

    pub fn parse(value: &str) -> Option<Token> {
        let (id, secret) = value.split_once('-')?;
        let well_formed = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric());
        (well_formed(id, ID_LEN) && well_formed(secret, SECRET_LEN))
            .then(|| Token { id: id.to_owned(), secret: secret.to_owned() })
    }

    pub fn hashed_secret(&self) -> Vec<u8> {
        Sha256::digest(self.secret.as_bytes()).to_vec()
    }

    pub fn matches(&self, hashed_secret: &[u8]) -> bool {
        self.hashed_secret().ct_eq(hashed_secret).into()
    }
}

/// `len` random letters and digits.
pub fn random(len: usize) -> String {
    rand::rng().sample_iter(Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_malformed_tokens() {
        let token = Token::generate();
        let parsed = Token::parse(&token.to_header_value()).unwrap();
        assert_eq!((parsed.id.as_str(), parsed.secret.as_str()), (token.id.as_str(), token.secret.as_str()));
        assert!(parsed.matches(&token.hashed_secret()));
        assert!(!Token::generate().matches(&token.hashed_secret()));
        for bad in ["", "abc", "nodash", &format!("{}-", token.id), &format!("{}!-{}", &token.id[..9], token.secret)] {
            assert!(Token::parse(bad).is_none(), "{bad:?}");
        }
    }
}
