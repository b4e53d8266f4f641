//! Which serde format shmsock-services' typed messages use: postcard and
//! bincode (1.x) encoding and decoding a typical small message and a
//! larger one, into a reused buffer. Numbers and the choice are in
//! docs/services.md ("Typed messages").
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // bench code

use criterion::{criterion_group, criterion_main, Criterion};
use serde::{Deserialize, Serialize};
use std::hint::black_box;

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Small {
    id: u64,
    seq: u32,
    name: String,
    ok: bool,
    values: [f32; 4],
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Large {
    id: u64,
    tags: Vec<String>,
    samples: Vec<u32>,
}

fn small() -> Small {
    Small {
        id: 0x1234_5678,
        seq: 42,
        name: "camera.front".into(),
        ok: true,
        values: [1.0, 2.5, -3.0, 4.25],
    }
}

fn large() -> Large {
    Large {
        id: 7,
        tags: (0..16).map(|i| format!("tag-{i}")).collect(),
        samples: (0..1024)
            .map(|i| i * 2_654_435_761u32.wrapping_mul(i))
            .collect(),
    }
}

fn codec(c: &mut Criterion) {
    let s = small();
    let l = large();
    eprintln!(
        "encoded sizes: small postcard {} B, bincode {} B; large postcard {} B, bincode {} B",
        postcard::to_allocvec(&s).unwrap().len(),
        bincode::serialize(&s).unwrap().len(),
        postcard::to_allocvec(&l).unwrap().len(),
        bincode::serialize(&l).unwrap().len(),
    );
    let mut g = c.benchmark_group("codec");
    let mut buf = Vec::with_capacity(1 << 16);
    g.bench_function("small/postcard/roundtrip", |b| {
        b.iter(|| {
            buf.clear();
            let out = postcard::to_extend(black_box(&s), std::mem::take(&mut buf)).unwrap();
            let back: Small = postcard::from_bytes(black_box(&out)).unwrap();
            buf = out;
            back
        })
    });
    g.bench_function("small/bincode/roundtrip", |b| {
        b.iter(|| {
            buf.clear();
            bincode::serialize_into(&mut buf, black_box(&s)).unwrap();
            let back: Small = bincode::deserialize(black_box(&buf)).unwrap();
            back
        })
    });
    g.bench_function("large/postcard/roundtrip", |b| {
        b.iter(|| {
            buf.clear();
            let out = postcard::to_extend(black_box(&l), std::mem::take(&mut buf)).unwrap();
            let back: Large = postcard::from_bytes(black_box(&out)).unwrap();
            buf = out;
            back
        })
    });
    g.bench_function("large/bincode/roundtrip", |b| {
        b.iter(|| {
            buf.clear();
            bincode::serialize_into(&mut buf, black_box(&l)).unwrap();
            let back: Large = bincode::deserialize(black_box(&buf)).unwrap();
            back
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
