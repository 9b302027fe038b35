//! Photo uploads are judged by their first bytes (`ImageType::sniff`).
//! Never panics; needs at most `SNIFF_LEN` bytes; what it accepts starts
//! with that type's signature.
#![no_main]
use domain::values::ImageType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let judged = ImageType::sniff(data);
    let head = &data[..data.len().min(ImageType::SNIFF_LEN)];
    assert_eq!(ImageType::sniff(head), judged, "sniff read past SNIFF_LEN");
    if let Some(kind) = judged {
        let signature: &[u8] = match kind {
            ImageType::Jpeg => b"\xFF\xD8\xFF",
            ImageType::Png => b"\x89PNG\r\n\x1a\n",
            ImageType::Gif => b"GIF8",
            ImageType::Webp => b"RIFF",
        };
        assert!(data.starts_with(signature));
        assert!(kind.mime().starts_with("image/"));
    }
});
