//! A forward-only reader over untrusted bytes: TPM structures are big-endian, TCG event logs
//! little-endian. Every length is checked against the bytes left before anything is sliced.

use super::TpmError;

pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    pub(super) fn offset(&self) -> usize {
        self.offset
    }

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    pub(super) fn take(&mut self, what: &'static str, len: usize) -> Result<&'a [u8], TpmError> {
        let truncated = TpmError::Truncated {
            what,
            offset: self.offset,
        };
        let end = self.offset.checked_add(len).ok_or(truncated.clone())?;
        let slice = self.bytes.get(self.offset..end).ok_or(truncated)?;
        self.offset = end;
        Ok(slice)
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], TpmError> {
        let offset = self.offset;
        self.take(what, N)?
            .try_into()
            .map_err(|_| TpmError::Truncated { what, offset })
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, TpmError> {
        self.array::<1>(what).map(|[byte]| byte)
    }

    pub(super) fn be_u16(&mut self, what: &'static str) -> Result<u16, TpmError> {
        self.array(what).map(u16::from_be_bytes)
    }

    pub(super) fn be_u32(&mut self, what: &'static str) -> Result<u32, TpmError> {
        self.array(what).map(u32::from_be_bytes)
    }

    pub(super) fn be_u64(&mut self, what: &'static str) -> Result<u64, TpmError> {
        self.array(what).map(u64::from_be_bytes)
    }

    pub(super) fn le_u16(&mut self, what: &'static str) -> Result<u16, TpmError> {
        self.array(what).map(u16::from_le_bytes)
    }

    pub(super) fn le_u32(&mut self, what: &'static str) -> Result<u32, TpmError> {
        self.array(what).map(u32::from_le_bytes)
    }

    /// A TPM2B: a big-endian u16 size and that many bytes.
    pub(super) fn tpm2b(&mut self, what: &'static str) -> Result<&'a [u8], TpmError> {
        let len = self.be_u16(what)?;
        self.take(what, usize::from(len))
    }

    /// A little-endian u32 length and that many bytes (TCG event data).
    pub(super) fn le_u32_sized(&mut self, what: &'static str) -> Result<&'a [u8], TpmError> {
        let offset = self.offset;
        let len = usize::try_from(self.le_u32(what)?)
            .map_err(|_| TpmError::Truncated { what, offset })?;
        self.take(what, len)
    }
}
