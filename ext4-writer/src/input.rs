//! Tar input: detects gzip and zstd by their magic bytes and decompresses on the fly.

use std::io::{self, BufRead, BufReader, Read};

/// Buffer for the compressed or plain stream; large reads of file data bypass it.
const INPUT_BUFFER: usize = 256 * 1024;

/// Wraps `r` so that reads yield the plain tar, whatever compression it came in.
pub fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(INPUT_BUFFER, r);
    let head = buf.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            INPUT_BUFFER,
            flate2::bufread::MultiGzDecoder::new(buf),
        )))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(BufReader::with_capacity(
            INPUT_BUFFER,
            zstd::stream::read::Decoder::with_buffer(buf)?,
        )))
    } else {
        Ok(Box::new(buf))
    }
}
