//! Tests of the on-disk index runs: lookups across blocks, tampering, order.

use super::*;
use crate::id::BlobKind;

fn slot(pack: u32) -> Slot {
    Slot {
        pack,
        kind: BlobKind::Data,
        offset: pack * 3,
        length: 100,
        raw_length: 90,
    }
}

/// Writes `records` (sorted here) as a run and opens it.
fn write(dir: &Path, key: &[u8; 32], mut records: Vec<Record>) -> Run {
    records.sort_unstable();
    let mut w = RunWriter::create(dir, key).expect("create");
    for r in &records {
        w.push(r).expect("push");
    }
    let meta = w.finish().expect("finish");
    Run::open(dir, &meta, key, 8).expect("open")
}

#[test]
fn lookups_find_every_copy_across_block_boundaries() {
    let dir = tempfile::tempdir().expect("dir");
    let key = [7u8; 32];
    let mut records = Vec::new();
    let mut ids = Vec::new();
    for i in 0..5_000u32 {
        let id = BlobId::random();
        records.push(record::encode(&id, &slot(i)).expect("fits"));
        ids.push((id, 1));
    }
    // Ids that share their first 8 bytes (the fence cannot tell them
    // apart) and a blob with more copies than a block holds.
    let mut same_prefix = *BlobId::random().as_bytes();
    for i in 0..3u8 {
        same_prefix[31] = i;
        let id = BlobId::from_bytes(same_prefix);
        records.push(record::encode(&id, &slot(9_000 + u32::from(i))).expect("fits"));
        ids.push((id, 1));
    }
    let many = BlobId::random();
    for c in 0..(PER_BLOCK as u32 * 2 + 5) {
        records.push(record::encode(&many, &slot(20_000 + c)).expect("fits"));
    }
    ids.push((many, PER_BLOCK * 2 + 5));
    let total = records.len() as u64;
    let run = write(dir.path(), &key, records);
    assert_eq!(run.meta().records, total);
    assert_eq!(run.meta().distinct, ids.len() as u64);
    for _ in 0..2 {
        // Twice: from disk, then partly from the kept blocks.
        for (id, copies) in &ids {
            let mut out = Vec::new();
            run.lookup(id, &mut out).expect("lookup");
            assert_eq!(out.len(), *copies, "copies of {}", id.short());
        }
    }
    let mut out = Vec::new();
    run.lookup(&BlobId::random(), &mut out).expect("lookup");
    assert!(out.is_empty(), "an unknown id");
    let scanned: Vec<Record> = run.scan().map(|r| r.expect("scan")).collect();
    assert_eq!(scanned.len() as u64, total);
    assert!(scanned.windows(2).all(|w| w[0] <= w[1]), "scan is sorted");
}

#[test]
fn a_flipped_byte_a_moved_block_or_another_key_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let key = [1u8; 32];
    let ids: Vec<BlobId> = (0..500).map(|_| BlobId::random()).collect();
    let records = ids
        .iter()
        .enumerate()
        .map(|(i, id)| record::encode(id, &slot(i as u32)).expect("fits"))
        .collect();
    let run = write(dir.path(), &key, records);
    let meta = run.meta().clone();
    let path = dir.path().join(meta.file_name());
    assert!(
        Run::open(dir.path(), &meta, &[2u8; 32], 0).is_err(),
        "another key"
    );
    let clean = std::fs::read(&path).expect("read");

    // A record byte flipped: the run opens (the footer is intact) but
    // the lookup in that block fails, and never returns a wrong slot.
    let mut bytes = clean.clone();
    bytes[BLOCK_LEN + 40] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    let run = Run::open(dir.path(), &meta, &key, 0).expect("footer intact");
    let failed = ids.iter().filter(|id| {
        let mut out = Vec::new();
        match run.lookup(id, &mut out) {
            Ok(()) => {
                assert_eq!(out.len(), 1);
                false
            }
            Err(e) => {
                assert!(e.to_string().contains("fails its MAC"), "{e}");
                true
            }
        }
    });
    assert!(failed.count() >= PER_BLOCK - 1, "every id of block 1");
    assert!(run.scan().any(|r| r.is_err()), "a scan reports it too");

    // Two blocks swapped: both fail.
    let mut bytes = clean.clone();
    let (a, b) = bytes.split_at_mut(BLOCK_LEN);
    a.swap_with_slice(&mut b[..BLOCK_LEN]);
    std::fs::write(&path, &bytes).expect("write");
    let run = Run::open(dir.path(), &meta, &key, 0).expect("footer intact");
    let mut failed = 0;
    for (i, id) in ids.iter().enumerate() {
        let mut out = Vec::new();
        match run.lookup(id, &mut out) {
            Ok(()) => assert_eq!(out, [slot(i as u32)], "never a wrong slot"),
            Err(_) => failed += 1,
        }
    }
    // The ids of blocks 0 and 1, and perhaps the first of block 2
    // (whose copies could start at the end of block 1).
    assert!(
        (2 * PER_BLOCK..=2 * PER_BLOCK + 1).contains(&failed),
        "{failed}"
    );
    assert!(run.scan().next().is_some_and(|r| r.is_err()));

    // Truncated, or a fence byte flipped: the run does not open.
    std::fs::write(&path, &clean[..clean.len() - 1]).expect("write");
    assert!(Run::open(dir.path(), &meta, &key, 0).is_err());
    let mut bytes = clean;
    let fence_at = meta.blocks() as usize * BLOCK_LEN;
    bytes[fence_at] ^= 0x80;
    std::fs::write(&path, &bytes).expect("write");
    assert!(Run::open(dir.path(), &meta, &key, 0).is_err());
}

#[test]
fn the_galloping_fence_search_agrees_with_a_binary_search() {
    let mut rng_state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    for len in [0usize, 1, 2, 3, 10, 1000, 20_000] {
        let mut fence: Vec<u64> = (0..len).map(|_| next()).collect();
        fence.sort_unstable();
        if len > 10 {
            fence[5] = fence[4]; // equal neighbours
            fence[6] = fence[4];
        }
        let mut probes: Vec<u64> = (0..500).map(|_| next()).collect();
        probes.extend(fence.iter().copied());
        probes.extend([0, 1, u64::MAX, u64::MAX - 1]);
        for k in probes {
            assert_eq!(
                first_not_below(&fence, k),
                fence.partition_point(|f| *f < k),
                "len {len}, key {k}"
            );
        }
    }
}

#[test]
fn records_out_of_order_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let mut w = RunWriter::create(dir.path(), &[0u8; 32]).expect("create");
    let (a, b) = (BlobId::from_bytes([2; 32]), BlobId::from_bytes([1; 32]));
    w.push(&record::encode(&a, &slot(0)).expect("fits"))
        .expect("first");
    assert!(
        w.push(&record::encode(&b, &slot(0)).expect("fits"))
            .is_err()
    );
}
