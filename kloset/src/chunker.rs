//! Content-defined chunking with FastCDC (2020), keyed by a per-store seed.
//!
//! Pure and synchronous: [`Chunker`] owns one reusable buffer of `max_size`
//! bytes and yields chunks of a reader in order. Boundaries depend only on the
//! content and the seed, so shifted data still deduplicates. A worker thread
//! keeps one `Chunker` and reuses its buffer for every file it reads, so small
//! files cost no large allocation.

use std::borrow::Cow;
use std::io::{self, Read};

use fastcdc::v2020::{Normalization, cut_gear, get_gear_with_seed, select_masks};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Chunking parameters, stored in the store configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk (except a file's last one).
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
    /// FastCDC normalization level (0–3).
    pub normalization: u8,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 8 * 1024 * 1024,
            normalization: 1,
        }
    }
}

impl ChunkerParams {
    /// Rejects parameters outside what FastCDC supports.
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020 as f;
        let (min, avg, max) = (
            self.min_size as usize,
            self.avg_size as usize,
            self.max_size as usize,
        );
        let ok = (f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&min)
            && (f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&avg)
            && (f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0
            && self.normalization <= 3;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "unsupported chunker parameters {self:?}"
            )))
        }
    }

    fn level(&self) -> Normalization {
        match self.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        }
    }
}

/// A reusable FastCDC chunker.
pub struct Chunker {
    params: ChunkerParams,
    masks: (u64, u64),
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("params", &self.params)
            .finish()
    }
}

impl Chunker {
    /// A chunker for validated `params`, keyed with `seed`.
    pub fn new(params: ChunkerParams, seed: u64) -> Self {
        let masks = select_masks(params.avg_size as usize, params.level());
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Chunker {
            params,
            masks,
            gear,
            gear_ls,
            buf: Vec::new(),
        }
    }

    /// Splits everything `reader` yields into chunks, calling `sink` for each
    /// one in order. Returns the total number of bytes read.
    pub fn chunk<R: Read, E: From<io::Error>>(
        &mut self,
        mut reader: R,
        mut sink: impl FnMut(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<u64, E> {
        let max = self.params.max_size as usize;
        if self.buf.len() < max {
            self.buf.resize(max, 0);
        }
        let (mask_s, mask_l) = self.masks;
        let mut filled = 0usize;
        let mut total = 0u64;
        let mut eof = false;
        loop {
            while !eof && filled < max {
                match reader.read(&mut self.buf[filled..max]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        filled += n;
                        total += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if filled == 0 {
                return Ok(total);
            }
            let cut = if filled <= self.params.min_size as usize {
                filled
            } else {
                let (_, cut) = cut_gear(
                    &self.buf[..filled],
                    self.params.min_size as usize,
                    self.params.avg_size as usize,
                    max,
                    mask_s,
                    mask_l,
                    mask_s << 1,
                    mask_l << 1,
                    &self.gear,
                    &self.gear_ls,
                );
                cut.clamp(1, filled)
            };
            sink(&self.buf[..cut])?;
            self.buf.copy_within(cut..filled, 0);
            filled -= cut;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_params() -> ChunkerParams {
        ChunkerParams {
            min_size: 2048,
            avg_size: 8192,
            max_size: 32768,
            normalization: 1,
        }
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn chunks(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(small_params(), seed);
        let mut out = Vec::new();
        c.chunk::<_, io::Error>(data, |chunk| {
            out.push(chunk.to_vec());
            Ok(())
        })
        .expect("chunk");
        out
    }

    #[test]
    fn chunks_cover_input_within_bounds() {
        let data = pseudo_random(1_000_000, 1);
        let cs = chunks(&data, 42);
        assert_eq!(cs.concat(), data);
        for c in &cs[..cs.len() - 1] {
            assert!(c.len() >= 2048 && c.len() <= 32768, "{}", c.len());
        }
        assert!(cs.len() > 50, "average near 8 KiB gives many chunks");
    }

    #[test]
    fn deterministic_and_shift_resistant() {
        let data = pseudo_random(500_000, 2);
        assert_eq!(chunks(&data, 7), chunks(&data, 7));
        let mut shifted = b"inserted prefix".to_vec();
        shifted.extend_from_slice(&data);
        let a = chunks(&data, 7);
        let b = chunks(&shifted, 7);
        let common = a.iter().filter(|c| b.contains(c)).count();
        assert!(
            common * 10 >= a.len() * 8,
            "most chunks survive a shift: {common}/{}",
            a.len()
        );
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = pseudo_random(500_000, 3);
        assert_ne!(chunks(&data, 1), chunks(&data, 2));
    }

    #[test]
    fn empty_and_tiny_inputs() {
        assert!(chunks(&[], 1).is_empty());
        assert_eq!(chunks(b"abc", 1), vec![b"abc".to_vec()]);
    }

    #[test]
    fn default_params_are_valid_and_bad_ones_rejected() {
        ChunkerParams::default().validate().expect("valid");
        let mut p = small_params();
        p.min_size = 3;
        assert!(p.validate().is_err());
    }
}
