//! The TD HOB OVMF measures first into RTMR0, rebuilt from the image's compact witness and the
//! VM's memory size (dstack-mr tdx.rs `measure_td_hob_from_witness_data`).
//!
//! Witness (`TdHobWitnessV1`, unsigned LEB128 varints, all in 4 KiB pages): `base_page`,
//! `td_hob_page_delta`, `range_count`, then `range_count × (start_page_delta, page_count)` of the
//! ranges TDVF accepts. The HOB is a 56-byte PHIT header followed by one 48-byte resource HOB per
//! memory range; the last (unaccepted) range is split at 2 GiB / 4 GiB from q35's high-memory
//! split on. All arithmetic is checked: the witness comes from host-supplied vm_config.

use super::super::event_log::{sha384, Rtmr};
use super::super::DstackError;

const PAGE_SIZE: u64 = 0x1000;
/// q35 keeps RAM in one block below 4 GiB until this size, then caps it at 2 GiB and puts the
/// rest above 4 GiB.
pub(super) const Q35_HIGH_MEMORY_SPLIT: u64 = 0xB000_0000;
const LOW_MEMORY_TOP: u64 = 0x8000_0000;
const HIGH_MEMORY_BASE: u64 = 0x1_0000_0000;
/// A real witness has one range per TD_HOB/TEMP_MEM section (four); upstream caps the count at
/// its TDVF section limit, since every range re-sorts the list.
const MAX_RANGES: u64 = 64;
/// Resource types of the HOB.
const RESOURCE_SYSTEM_MEMORY: u8 = 0x00;
const RESOURCE_MEMORY_UNACCEPTED: u8 = 0x07;

fn invalid(reason: &'static str) -> DstackError {
    DstackError::Invalid {
        field: "TD HOB witness",
        reason,
    }
}

fn read_varuint(input: &mut &[u8]) -> Result<u64, DstackError> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let (&byte, rest) = input
            .split_first()
            .ok_or_else(|| invalid("truncated varuint"))?;
        *input = rest;
        if shift == 63 && byte & 0x7e != 0 {
            return Err(invalid("varuint exceeds 64 bits"));
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift >= 64 {
            return Err(invalid("varuint exceeds 64 bits"));
        }
    }
}

fn page_address(base_page: u64, delta: u64) -> Result<u64, DstackError> {
    base_page
        .checked_add(delta)
        .and_then(|page| page.checked_mul(PAGE_SIZE))
        .ok_or_else(|| invalid("page address overflows"))
}

/// `(accepted, start, end)` ranges covering `[0, memory_size)`, as TDVF's memory acceptor keeps
/// them: accepting a range splits the unaccepted ones it overlaps, then the list is re-sorted.
fn accept(ranges: &mut Vec<(bool, u64, u64)>, start: u64, end: u64) {
    if start >= end {
        return;
    }
    let mut next = Vec::with_capacity(ranges.len() + 2);
    for &(accepted, range_start, range_end) in ranges.iter() {
        if accepted || range_end <= start || range_start >= end {
            next.push((accepted, range_start, range_end));
        } else {
            if range_start < start {
                next.push((false, range_start, start));
            }
            if range_end > end {
                next.push((false, end, range_end));
            }
        }
    }
    next.push((true, start, end));
    next.sort_by_key(|&(_, range_start, _)| range_start);
    *ranges = next;
}

fn resource_hob(hob: &mut Vec<u8>, resource_type: u8, start: u64, length: u64) {
    hob.extend_from_slice(&[0x03, 0x00]); // HobType: resource descriptor
    hob.extend_from_slice(&48u16.to_le_bytes());
    hob.extend_from_slice(&[0; 4]); // reserved
    hob.extend_from_slice(&[0; 16]); // owner GUID
    hob.push(resource_type);
    hob.extend_from_slice(&[0; 3]);
    hob.extend_from_slice(&7u32.to_le_bytes()); // attributes: present | initialized | tested
    hob.extend_from_slice(&start.to_le_bytes());
    hob.extend_from_slice(&length.to_le_bytes());
}

/// SHA-384 of the TD HOB for this witness and memory size.
pub(super) fn td_hob_digest(witness: &[u8], memory_size: u64) -> Result<Rtmr, DstackError> {
    let mut input = witness;
    let base_page = read_varuint(&mut input)?;
    let hob_page_delta = read_varuint(&mut input)?;
    let range_count = read_varuint(&mut input)?;
    if range_count > MAX_RANGES {
        return Err(invalid("declares more than 64 ranges"));
    }
    let hob_base = page_address(base_page, hob_page_delta)?;
    let mut ranges = vec![(false, 0, memory_size)];
    for _ in 0..range_count {
        let start = page_address(base_page, read_varuint(&mut input)?)?;
        let length = read_varuint(&mut input)?
            .checked_mul(PAGE_SIZE)
            .ok_or_else(|| invalid("range length overflows"))?;
        let end = start
            .checked_add(length)
            .ok_or_else(|| invalid("range end overflows"))?;
        accept(&mut ranges, start, end);
    }
    if !input.is_empty() {
        return Err(invalid("trailing bytes"));
    }

    let mut hob = Vec::with_capacity(56 + 48 * (ranges.len() + 1));
    hob.extend_from_slice(&[0x01, 0x00]); // HobType: PHIT
    hob.extend_from_slice(&56u16.to_le_bytes());
    hob.extend_from_slice(&[0; 4]); // reserved
    hob.extend_from_slice(&9u32.to_le_bytes()); // version
    hob.extend_from_slice(&[0; 4]); // boot mode
    hob.extend_from_slice(&[0; 32]); // memory top/bottom, free memory top/bottom
    hob.extend_from_slice(&[0; 8]); // EfiEndOfHobList, patched below

    let (_, last_start, last_end) = ranges.pop().ok_or_else(|| invalid("no memory ranges"))?;
    for (accepted, start, end) in ranges {
        let resource = if accepted {
            RESOURCE_SYSTEM_MEMORY
        } else {
            RESOURCE_MEMORY_UNACCEPTED
        };
        let length = end
            .checked_sub(start)
            .ok_or_else(|| invalid("range ends before it starts"))?;
        resource_hob(&mut hob, resource, start, length);
    }
    if last_end < last_start {
        return Err(invalid("range ends before it starts"));
    }
    if memory_size >= Q35_HIGH_MEMORY_SPLIT {
        if last_start < LOW_MEMORY_TOP {
            resource_hob(
                &mut hob,
                RESOURCE_MEMORY_UNACCEPTED,
                last_start,
                LOW_MEMORY_TOP - last_start,
            );
        }
        if last_end > LOW_MEMORY_TOP {
            resource_hob(
                &mut hob,
                RESOURCE_MEMORY_UNACCEPTED,
                HIGH_MEMORY_BASE,
                last_end - LOW_MEMORY_TOP,
            );
        }
    } else {
        resource_hob(
            &mut hob,
            RESOURCE_MEMORY_UNACCEPTED,
            last_start,
            last_end - last_start,
        );
    }
    let end_of_hob_list = u64::try_from(hob.len())
        .ok()
        .and_then(|len| hob_base.checked_add(len + 8))
        .ok_or_else(|| invalid("end of the HOB list overflows"))?;
    hob[48..56].copy_from_slice(&end_of_hob_list.to_le_bytes());
    Ok(sha384(&hob))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varuint(mut value: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            out.push(if value == 0 { byte } else { byte | 0x80 });
            if value == 0 {
                return;
            }
        }
    }

    /// The real sample's witness (tdx-lite-getquote.json) and its digest, as the Python
    /// reference computes it for 2 GiB.
    const SAMPLE_WITNESS: &str = "80100904000609020b021010";

    #[test]
    fn varuints_up_to_64_bits() {
        let mut max = Vec::new();
        put_varuint(u64::MAX, &mut max);
        assert_eq!(read_varuint(&mut max.as_slice()).unwrap(), u64::MAX);
        let mut too_large = [0xff; 10];
        too_large[9] = 0x02;
        assert_eq!(
            read_varuint(&mut too_large.as_slice()).unwrap_err(),
            invalid("varuint exceeds 64 bits")
        );
        assert_eq!(
            read_varuint(&mut [0x80].as_slice()).unwrap_err(),
            invalid("truncated varuint")
        );
    }

    #[test]
    fn memory_above_the_split_is_moved_above_4_gib() {
        let witness = hex::decode(SAMPLE_WITNESS).unwrap();
        let at_2g = td_hob_digest(&witness, 0x8000_0000).unwrap();
        let at_3g = td_hob_digest(&witness, 0xC000_0000).unwrap();
        let at_4g = td_hob_digest(&witness, 0x1_0000_0000).unwrap();
        assert_ne!(at_2g, at_3g);
        assert_ne!(at_3g, at_4g);
    }

    #[test]
    fn malformed_witnesses_are_refused() {
        let mut header = Vec::new();
        for value in [0, 0, 1, 0] {
            put_varuint(value, &mut header);
        }
        let cases: [(Vec<u8>, &str); 4] = [
            (header.clone(), "truncated varuint"),
            ([header.clone(), vec![1, 0]].concat(), "trailing bytes"),
            (vec![0, 0, 65], "declares more than 64 ranges"),
            (
                {
                    let mut overflow = Vec::new();
                    for value in [u64::MAX, 1, 0] {
                        put_varuint(value, &mut overflow);
                    }
                    overflow
                },
                "page address overflows",
            ),
        ];
        for (witness, reason) in cases {
            let err = td_hob_digest(&witness, 0x8000_0000).unwrap_err();
            assert_eq!(err, invalid(reason));
            assert_eq!(err.kind().as_str(), "malformed");
        }
    }
}
