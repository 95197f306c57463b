//! The VHDX log (MS-VHDX 2.3): finding the active sequence of entries and replaying it
//! into the file, so that a disk closed uncleanly is never read with stale metadata.

use std::path::Path;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::header::crc_with_zero_field;
use crate::error::{Error, ErrorKind, Result};
use crate::file::ImageFile;

/// Log entry signature `loge`.
pub const ENTRY_SIGNATURE: [u8; 4] = *b"loge";
/// Zero descriptor signature.
pub const ZERO_SIGNATURE: [u8; 4] = *b"zero";
/// Data descriptor signature.
pub const DATA_DESCRIPTOR_SIGNATURE: [u8; 4] = *b"desc";
/// Data sector signature.
pub const DATA_SECTOR_SIGNATURE: [u8; 4] = *b"data";
/// Log sector size.
pub const LOG_SECTOR: usize = 4096;
/// Largest log replayed (Hyper-V and qemu write 1 MiB logs).
pub const MAX_LOG_BYTES: u32 = 64 << 20;
/// How far past its current size a replayed log may grow the file.
pub const MAX_LOG_GROWTH: u64 = 64 << 30;

/// Log entry header.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct EntryHeader {
    /// [`ENTRY_SIGNATURE`].
    pub signature: [u8; 4],
    /// CRC-32C of the whole entry with this field zero.
    pub checksum: U32,
    /// Bytes in the entry, a multiple of 4 KiB.
    pub entry_length: U32,
    /// Log offset of the first entry of the active sequence.
    pub tail: U32,
    /// Sequence number.
    pub sequence_number: U64,
    /// Descriptors that follow.
    pub descriptor_count: U32,
    /// Zero.
    pub reserved: U32,
    /// Must equal the header's log GUID.
    pub log_guid: [u8; 16],
    /// File size that was stable when the entry was written.
    pub flushed_file_offset: U64,
    /// File size the entry's writes need.
    pub last_file_offset: U64,
}

const _: () = assert!(size_of::<EntryHeader>() == 64);

/// A zero or data descriptor (same size; told apart by the signature).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Descriptor {
    /// [`ZERO_SIGNATURE`] or [`DATA_DESCRIPTOR_SIGNATURE`].
    pub signature: [u8; 4],
    /// Data: the last 4 bytes of the 4 KiB sector. Zero: reserved.
    pub trailing_or_reserved: U32,
    /// Data: the first 8 bytes of the sector. Zero: bytes to zero.
    pub leading_or_length: U64,
    /// Where in the file.
    pub file_offset: U64,
    /// Must equal the entry's sequence number.
    pub sequence_number: U64,
}

const _: () = assert!(size_of::<Descriptor>() == 32);

/// A data sector.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DataSector {
    /// [`DATA_SECTOR_SIGNATURE`].
    pub signature: [u8; 4],
    /// High half of the sequence number.
    pub sequence_high: U32,
    /// Bytes 8..4092 of the sector.
    pub data: [u8; 4084],
    /// Low half of the sequence number.
    pub sequence_low: U32,
}

const _: () = assert!(size_of::<DataSector>() == 4096);

/// A write the log asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogWrite {
    /// Write this 4 KiB sector at the offset.
    Data(u64, Vec<u8>),
    /// Zero this many bytes at the offset.
    Zero(u64, u64),
}

/// A parsed, verified entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The header.
    pub header: EntryHeader,
    /// Its writes, in order.
    pub writes: Vec<LogWrite>,
}

/// Parses and verifies the entry at the start of `bytes` (which may extend past it).
pub fn parse_entry(bytes: &[u8], log_guid: &[u8; 16]) -> Option<Entry> {
    let (h, _) = EntryHeader::read_from_prefix(bytes).ok()?;
    let len = h.entry_length.get() as usize;
    if h.signature != ENTRY_SIGNATURE
        || len == 0
        || !len.is_multiple_of(LOG_SECTOR)
        || len > bytes.len()
        || &h.log_guid != log_guid
    {
        return None;
    }
    let entry = &bytes[..len];
    if crc_with_zero_field(entry, 4) != h.checksum.get() {
        return None;
    }
    let seq = h.sequence_number.get();
    let count = h.descriptor_count.get() as usize;
    let desc_area = (64usize.checked_add(count.checked_mul(32)?)?).next_multiple_of(LOG_SECTOR);
    let (descs, _) = <[Descriptor]>::ref_from_prefix_with_elems(entry.get(64..)?, count).ok()?;
    let mut data_at = desc_area;
    let mut writes = Vec::with_capacity(count);
    for d in descs {
        if d.sequence_number.get() != seq {
            return None;
        }
        match d.signature {
            ZERO_SIGNATURE => {
                writes.push(LogWrite::Zero(
                    d.file_offset.get(),
                    d.leading_or_length.get(),
                ));
            }
            DATA_DESCRIPTOR_SIGNATURE => {
                let (sector, _) = DataSector::read_from_prefix(entry.get(data_at..)?).ok()?;
                if sector.signature != DATA_SECTOR_SIGNATURE
                    || sector.sequence_high.get() != (seq >> 32) as u32
                    || sector.sequence_low.get() != seq as u32
                {
                    return None;
                }
                let mut out = Vec::with_capacity(LOG_SECTOR);
                out.extend_from_slice(&d.leading_or_length.get().to_le_bytes());
                out.extend_from_slice(&sector.data);
                out.extend_from_slice(&d.trailing_or_reserved.get().to_le_bytes());
                writes.push(LogWrite::Data(d.file_offset.get(), out));
                data_at += LOG_SECTOR;
            }
            _ => return None,
        }
    }
    Some(Entry { header: h, writes })
}

/// Finds the active sequence in the circular `log` (entries in order, tail first).
/// `None` when no valid entry exists; an error when entries exist but no complete
/// sequence leads to the newest one.
pub fn active_sequence(
    log: &[u8],
    log_guid: &[u8; 16],
    path: &Path,
    log_offset: u64,
) -> Result<Option<Vec<Entry>>> {
    let n = log.len();
    if n == 0 || !n.is_multiple_of(LOG_SECTOR) {
        return Err(Error::corrupt(
            path,
            log_offset,
            "VHDX log length is not whole 4 KiB sectors",
        ));
    }
    // Entries may wrap around the end of the log: look at it twice over.
    let doubled = [log, log].concat();
    let mut head: Option<(usize, Entry)> = None;
    for off in (0..n).step_by(LOG_SECTOR) {
        if let Some(e) = parse_entry(&doubled[off..off + n], log_guid)
            && head.as_ref().is_none_or(|(_, h)| {
                e.header.sequence_number.get() > h.header.sequence_number.get()
            })
        {
            head = Some((off, e));
        }
    }
    let Some((head_off, head)) = head else {
        return Ok(None);
    };
    let refuse = |why: &str| {
        Error::new(
            ErrorKind::Corrupt,
            format!("VHDX log cannot be replayed: {why}"),
        )
        .with_path(path)
        .with_offset(log_offset)
    };
    let tail = head.header.tail.get() as usize;
    if tail >= n || !tail.is_multiple_of(LOG_SECTOR) {
        return Err(refuse("tail outside the log"));
    }
    let mut entries = Vec::new();
    let mut off = tail;
    let mut expect: Option<u64> = None;
    for _ in 0..=n / LOG_SECTOR {
        let e = parse_entry(&doubled[off..off + n], log_guid)
            .ok_or_else(|| refuse("broken entry between tail and head"))?;
        let seq = e.header.sequence_number.get();
        if expect.is_some_and(|want| want != seq) {
            return Err(refuse("sequence numbers are not consecutive"));
        }
        let len = e.header.entry_length.get() as usize;
        entries.push(e);
        if off == head_off {
            return Ok(Some(entries));
        }
        // Only an entry before the head needs a successor.
        expect = Some(
            seq.checked_add(1)
                .ok_or_else(|| refuse("a sequence number at its maximum is not the newest"))?,
        );
        off = (off + len) % n;
    }
    Err(refuse("the tail does not lead to the newest entry"))
}

/// Replays the active sequence of the log at `log_offset` into `file`. Returns whether
/// anything was replayed. The caller then clears the log GUID in the headers.
pub(crate) fn replay(
    file: &ImageFile,
    log_offset: u64,
    log_length: u32,
    log_guid: &[u8; 16],
) -> Result<bool> {
    let path = file.path();
    if log_length > MAX_LOG_BYTES {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("VHDX log of {log_length} bytes to replay (at most {MAX_LOG_BYTES})"),
        )
        .with_path(path));
    }
    let mut log = vec![0u8; log_length as usize];
    file.read_exact_at(&mut log, log_offset)?;
    let Some(entries) = active_sequence(&log, log_guid, path, log_offset)? else {
        return Ok(false);
    };
    let Some(head) = entries.last() else {
        return Ok(false);
    };
    let file_len = file.len()?;
    if file_len < head.header.flushed_file_offset.get() {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "VHDX log cannot be replayed: the file ({file_len} bytes) is shorter than the \
                 log's flushed size {}",
                head.header.flushed_file_offset.get()
            ),
        )
        .with_path(path));
    }
    let limit = head.header.last_file_offset.get().max(file_len);
    if limit > file_len.saturating_add(MAX_LOG_GROWTH) {
        return Err(Error::corrupt(
            path,
            log_offset,
            "VHDX log grows the file by more than 64 GiB",
        ));
    }
    for e in &entries {
        for w in &e.writes {
            match w {
                LogWrite::Data(at, data) => {
                    if at + data.len() as u64 > limit {
                        return Err(Error::corrupt(
                            path,
                            *at,
                            "VHDX log writes past its last file offset",
                        ));
                    }
                    file.write_all_at(data, *at)?;
                }
                LogWrite::Zero(at, len) => {
                    if at.checked_add(*len).is_none_or(|end| end > limit) {
                        return Err(Error::corrupt(
                            path,
                            *at,
                            "VHDX log zeroes past its last file offset",
                        ));
                    }
                    let zeros = vec![0u8; (*len).min(1 << 20) as usize];
                    let mut done = 0;
                    while done < *len {
                        let n = (*len - done).min(zeros.len() as u64) as usize;
                        file.write_all_at(&zeros[..n], at + done)?;
                        done += n as u64;
                    }
                }
            }
        }
    }
    if file.len()? < head.header.last_file_offset.get() {
        file.set_len(head.header.last_file_offset.get())?;
    }
    file.sync_data()?;
    Ok(true)
}

/// Builds one log entry (test support and fuzz seeds): data sectors written at the given
/// 4 KiB-aligned file offsets.
pub fn build_entry(
    sequence: u64,
    tail: u32,
    log_guid: [u8; 16],
    file_len: u64,
    sectors: &[(u64, [u8; 4096])],
) -> Vec<u8> {
    let count = sectors.len();
    let desc_area = (64 + 32 * count).next_multiple_of(LOG_SECTOR);
    let len = desc_area + LOG_SECTOR * count;
    let mut entry = vec![0u8; len];
    let h = EntryHeader {
        signature: ENTRY_SIGNATURE,
        checksum: 0.into(),
        entry_length: (len as u32).into(),
        tail: tail.into(),
        sequence_number: sequence.into(),
        descriptor_count: (count as u32).into(),
        reserved: 0.into(),
        log_guid,
        flushed_file_offset: file_len.into(),
        last_file_offset: file_len.into(),
    };
    entry[..64].copy_from_slice(h.as_bytes());
    for (i, (at, data)) in sectors.iter().enumerate() {
        let mut lead = [0u8; 8];
        lead.copy_from_slice(&data[..8]);
        let mut trail = [0u8; 4];
        trail.copy_from_slice(&data[4092..]);
        let d = Descriptor {
            signature: DATA_DESCRIPTOR_SIGNATURE,
            trailing_or_reserved: u32::from_le_bytes(trail).into(),
            leading_or_length: u64::from_le_bytes(lead).into(),
            file_offset: (*at).into(),
            sequence_number: sequence.into(),
        };
        entry[64 + 32 * i..96 + 32 * i].copy_from_slice(d.as_bytes());
        let mut body = [0u8; 4084];
        body.copy_from_slice(&data[8..4092]);
        let s = DataSector {
            signature: DATA_SECTOR_SIGNATURE,
            sequence_high: ((sequence >> 32) as u32).into(),
            data: body,
            sequence_low: (sequence as u32).into(),
        };
        let at = desc_area + LOG_SECTOR * i;
        entry[at..at + LOG_SECTOR].copy_from_slice(s.as_bytes());
    }
    let crc = crc32c::crc32c(&entry);
    entry[4..8].copy_from_slice(&crc.to_le_bytes());
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_active_sequence_and_refuses_a_broken_one() {
        let guid = [7u8; 16];
        let mut log = vec![0u8; 1 << 20];
        let e1 = build_entry(10, 0, guid, 1 << 22, &[(1 << 21, [1u8; 4096])]);
        let e2 = build_entry(11, 0, guid, 1 << 22, &[(1 << 21, [2u8; 4096])]);
        log[..e1.len()].copy_from_slice(&e1);
        log[e1.len()..e1.len() + e2.len()].copy_from_slice(&e2);
        let p = Path::new("x");
        let seq = active_sequence(&log, &guid, p, 0).unwrap().unwrap();
        assert_eq!(seq.len(), 2);
        assert_eq!(seq[1].writes, [LogWrite::Data(1 << 21, vec![2u8; 4096])]);
        // Another GUID: nothing to replay.
        assert!(active_sequence(&log, &[0; 16], p, 0).unwrap().is_none());
        // Break the first entry: the head's tail leads nowhere.
        log[100] ^= 1;
        let err = active_sequence(&log, &guid, p, 0).unwrap_err();
        assert!(err.to_string().contains("cannot be replayed"), "{err}");
    }

    /// The fuzzing found it: a sequence number of 2^64 - 1 overflowed while the walk
    /// worked out the next one.
    #[test]
    fn a_sequence_number_at_its_maximum_is_not_an_overflow() {
        let guid = [7u8; 16];
        let p = Path::new("x");
        let mut log = vec![0u8; 1 << 20];
        let last = build_entry(u64::MAX, 0, guid, 1 << 22, &[(1 << 21, [1u8; 4096])]);
        log[..last.len()].copy_from_slice(&last);
        let seq = active_sequence(&log, &guid, p, 0).unwrap().unwrap();
        assert_eq!(seq.len(), 1);
        // And as the newest after the one before it.
        let before = build_entry(u64::MAX - 1, 0, guid, 1 << 22, &[(1 << 21, [2u8; 4096])]);
        let mut log = vec![0u8; 1 << 20];
        log[..before.len()].copy_from_slice(&before);
        log[before.len()..before.len() + last.len()].copy_from_slice(&last);
        let seq = active_sequence(&log, &guid, p, 0).unwrap().unwrap();
        assert_eq!(seq.len(), 2);
    }
}
