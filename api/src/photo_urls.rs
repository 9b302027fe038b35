//! Signed photo URLs: `/v1/photos/{id}?company=…&expires=…&signature=…`.
//! They work without an `Authorization` header (in `<img src>`), for one
//! photo of one company until they expire. The signature is an HMAC by a key
//! only the server holds over the company, the photo and the expiry, so a
//! URL can be neither forged nor pointed at another company's photo.
//!
//! Expiries are rounded up to the next whole period, so reads within a period
//! hand out the same URL and a browser's cache keeps working.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::{CompanyId, PhotoId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct PhotoUrls {
    key: Vec<u8>,
    /// How long a URL lasts at least; it may last up to twice that.
    period_secs: i64,
}

impl PhotoUrls {
    pub fn new(key: Vec<u8>, period_secs: u64) -> Self {
        Self {
            key,
            period_secs: period_secs.max(60) as i64,
        }
    }

    fn mac(&self, company: CompanyId, photo: PhotoId, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("photo/{company}/{photo}/{expires}").as_bytes());
        mac
    }

    /// A URL for `photo` of `company`, valid from now for at least a period.
    pub fn url(&self, company: CompanyId, photo: PhotoId) -> String {
        let now = chrono::Utc::now().timestamp();
        let expires = (now / self.period_secs + 2) * self.period_secs;
        let signature =
            URL_SAFE_NO_PAD.encode(self.mac(company, photo, expires).finalize().into_bytes());
        format!("/v1/photos/{photo}?company={company}&expires={expires}&signature={signature}")
    }

    /// Whether a signed URL grants `photo` of `company`: its signature holds
    /// and it has not expired.
    pub fn verify(
        &self,
        company: CompanyId,
        photo: PhotoId,
        expires: i64,
        signature: &str,
    ) -> bool {
        if expires < chrono::Utc::now().timestamp() {
            return false;
        }
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        self.mac(company, photo, expires)
            .verify_slice(&signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn parts(url: &str) -> (i64, String, String) {
        let query = url.split_once('?').unwrap().1;
        let get = |name: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_owned()
        };
        (
            get("expires").parse().unwrap(),
            get("signature"),
            get("company"),
        )
    }

    #[test]
    fn a_url_opens_its_photo_of_its_company_only() {
        let urls = PhotoUrls::new(b"key".to_vec(), 3600);
        let (company, other) = (CompanyId(Uuid::now_v7()), CompanyId(Uuid::now_v7()));
        let photo = PhotoId(Uuid::now_v7());
        let url = urls.url(company, photo);
        assert_eq!(url, urls.url(company, photo), "stable within a period");
        let (expires, signature, named) = parts(&url);
        assert_eq!(named, company.to_string());
        assert!(urls.verify(company, photo, expires, &signature));
        assert!(!urls.verify(other, photo, expires, &signature));
        assert!(!urls.verify(company, PhotoId(Uuid::now_v7()), expires, &signature));
        assert!(!urls.verify(company, photo, expires + 1, &signature));
        assert!(!urls.verify(company, photo, expires, "AAAA"));
        let other_key = PhotoUrls::new(b"another".to_vec(), 3600);
        assert!(!other_key.verify(company, photo, expires, &signature));
    }

    #[test]
    fn an_expired_url_is_refused() {
        let urls = PhotoUrls::new(b"key".to_vec(), 3600);
        let (company, photo) = (CompanyId(Uuid::now_v7()), PhotoId(Uuid::now_v7()));
        let past = chrono::Utc::now().timestamp() - 1;
        let signature =
            URL_SAFE_NO_PAD.encode(urls.mac(company, photo, past).finalize().into_bytes());
        assert!(!urls.verify(company, photo, past, &signature));
    }
}
