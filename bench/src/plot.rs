//! `bench --plot FILE.svg`: round trip (p50) and one-way throughput by
//! message size, one line per transport, log-log, with the unix stream
//! (thick black) and the machine's floor (dashed grey: the cache-line
//! round trip; `memcpy` bandwidth) marked.
//!
//! Drawn with `plotters`' SVG backend only: text is laid out with its
//! built-in size estimate and rendered by the viewer, so no system font
//! library is needed to build or run it.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::child::Result;
use super::iox::{IoxApi, IoxWait};
use super::run::{size_name, Results, MEMCPY_HOT_LEN, MEMCPY_LEN};
use super::session::{Api, Transport, Wait};

/// Width and height of the picture, in SVG pixels.
const SIZE: (u32, u32) = (1500, 640);
/// Width of the legend column on the right.
const LEGEND_W: u32 = 300;

/// How a transport's line looks.
struct Look {
    color: RGBColor,
    width: u32,
}

/// Colour and weight of each transport's line: shmsock Spin red, Adaptive
/// blue, Block green (copying `send` dark, zero-copy `reserve` light,
/// batches lighter still); iceoryx2 busy-poll orange, event-driven purple;
/// shmsock on tokio teal; the unix stream thick black; the other sockets
/// (and tokio's) grey.
fn look(t: Transport) -> Look {
    let (color, width) = match t {
        Transport::Stream => (RGBColor(0, 0, 0), 4),
        Transport::SeqPacket => (RGBColor(120, 120, 120), 2),
        Transport::Pipe => (RGBColor(170, 170, 170), 2),
        Transport::TokioStream => (RGBColor(70, 70, 70), 2),
        Transport::TokioShm => (RGBColor(0, 150, 150), 2),
        Transport::Shm(w, a) => {
            let shades = match w {
                Wait::Spin => [(200, 30, 30), (240, 110, 110), (250, 170, 170)],
                Wait::Adaptive => [(20, 70, 200), (100, 150, 240), (160, 190, 250)],
                Wait::Block => [(20, 140, 40), (100, 200, 110), (160, 220, 160)],
            };
            let (r, g, b) = shades[match a {
                Api::Copy => 0,
                Api::ZeroCopy => 1,
                // Batches are 64 B only and streaming large sizes only: one
                // shade serves both.
                Api::Batch | Api::Streamed => 2,
            }];
            (RGBColor(r, g, b), 2)
        }
        Transport::Iceoryx2(w, a) => {
            let (r, g, b) = match (w, a) {
                (IoxWait::Poll, IoxApi::Copy) => (230, 120, 0),
                (IoxWait::Poll, IoxApi::Loan) => (250, 185, 80),
                (IoxWait::Event, IoxApi::Copy) => (120, 40, 160),
                (IoxWait::Event, IoxApi::Loan) => (185, 130, 220),
            };
            (RGBColor(r, g, b), 2)
        }
    };
    Look { color, width }
}

/// One transport's points: (size, RTT p50 in ns, GB/s).
struct Line {
    transport: Transport,
    label: String,
    points: Vec<(f64, f64, f64)>,
}

fn lines(res: &Results) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    for r in &res.rows {
        let p = (
            r.size as f64,
            r.rtt.p50.max(1) as f64,
            r.thr.bytes_per_s / 1e9,
        );
        match out.iter_mut().find(|l| l.transport == r.transport) {
            Some(l) => l.points.push(p),
            None => out.push(Line {
                transport: r.transport,
                label: label(r.transport),
                points: vec![p],
            }),
        }
    }
    // The unix stream last: drawn on top of the others.
    out.sort_by_key(|l| l.transport == Transport::Stream);
    out
}

fn label(t: Transport) -> String {
    match t {
        Transport::Shm(_, Api::Copy) => format!("{} send", t.name()),
        Transport::Shm(_, Api::ZeroCopy) => format!("{} reserve / in place", t.name()),
        Transport::Shm(_, Api::Batch) => format!("{} batch32", t.name()),
        Transport::Shm(_, Api::Streamed) => format!("{} streamed", t.name()),
        Transport::Iceoryx2(..) => format!("{} {}", t.name(), t.mode(0)),
        _ => t.name().to_string(),
    }
}

/// Powers of 4 from 64 B (the bench's sizes are among them) up to `max`.
fn size_ticks(min: f64, max: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut s = 64.0;
    while s <= max * 1.0001 {
        if s >= min / 1.0001 {
            v.push(s);
        }
        s *= 4.0;
    }
    v
}

/// Powers of 10 covering `lo..=hi`.
fn decade_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut d = 10f64.powf(lo.log10().floor());
    while d <= hi * 1.0001 {
        v.push(d);
        d *= 10.0;
    }
    v
}

/// `500 ns`, `20 µs`, `3 ms`.
fn time_label(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.0} ms", ns / 1e6)
    } else {
        format!("{:.0} s", ns / 1e9)
    }
}

/// `10 GB/s`, `100 MB/s`, `0.1 MB/s` (decimal units).
fn gb_label(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0} GB/s")
    } else if v >= 1e-3 {
        format!("{:.0} MB/s", v * 1e3)
    } else {
        format!("{} MB/s", (v * 1e6).round() / 1e3)
    }
}

/// Small grey text whose bottom-left corner sits at the anchor (just above
/// a floor line).
fn note_style() -> TextStyle<'static> {
    ("sans-serif", 13)
        .into_font()
        .color(&RGBColor(100, 100, 100))
        .pos(Pos::new(HPos::Left, VPos::Bottom))
}

fn err(e: impl std::fmt::Display) -> super::child::BoxError {
    format!("plot: {e}").into()
}

/// Draws the run into an SVG file at `path`.
///
/// # Errors
/// If the run has no rows or the file cannot be written.
pub fn svg(res: &Results, path: &Path) -> Result<()> {
    let lines = lines(res);
    if lines.is_empty() {
        return Err("plot: no rows measured".into());
    }
    let sizes: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    let (smin, smax) = min_max(&sizes);
    let (smin, smax) = (smin.min(smax / 4.0), smax.max(smin * 4.0));
    let floor_ns = res.floors.cacheline.p50.max(1) as f64;
    let mut rtts: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .collect();
    rtts.push(floor_ns);
    let (tmin, tmax) = min_max(&rtts);
    let memcpy = [
        (
            res.floors.memcpy_hot / 1e9,
            format!("memcpy {}", size_name(MEMCPY_HOT_LEN)),
        ),
        (
            res.floors.memcpy / 1e9,
            format!("memcpy {}", size_name(MEMCPY_LEN)),
        ),
    ];
    let mut gbs: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.2))
        .filter(|v| *v > 0.0)
        .collect();
    gbs.extend(memcpy.iter().map(|m| m.0));
    let (gmin, gmax) = min_max(&gbs);

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "shmsock bench: two processes, every byte written and checked (log-log)",
            ("sans-serif", 22),
        )
        .map_err(err)?;
    let (charts, legend) = root.split_horizontally(SIZE.0 - LEGEND_W);
    let (left, right) = charts.split_horizontally((SIZE.0 - LEGEND_W) / 2);

    let x_ticks = size_ticks(smin, smax);
    let fmt_size = |v: &f64| size_name(v.round() as usize);

    // Round trip.
    let (ylo, yhi) = (tmin / 1.5, tmax * 1.5);
    let mut c = ChartBuilder::on(&left)
        .caption("round trip p50 (lower is better)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (smin..smax).log_scale().with_key_points(x_ticks.clone()),
            (ylo..yhi)
                .log_scale()
                .with_key_points(decade_ticks(ylo, yhi)),
        )
        .map_err(err)?;
    c.configure_mesh()
        .x_label_formatter(&fmt_size)
        .y_label_formatter(&|v| time_label(*v))
        .x_desc("message size")
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    c.draw_series(DashedLineSeries::new(
        [(smin, floor_ns), (smax, floor_ns)],
        8,
        6,
        RGBColor(140, 140, 140).stroke_width(2),
    ))
    .map_err(err)?;
    c.draw_series(std::iter::once(Text::new(
        format!("floor: cache-line round trip {}", time_label(floor_ns)),
        (smin * 1.15, floor_ns),
        note_style(),
    )))
    .map_err(err)?;
    for l in &lines {
        let k = look(l.transport);
        let style = k.color.stroke_width(k.width);
        c.draw_series(LineSeries::new(l.points.iter().map(|p| (p.0, p.1)), style))
            .map_err(err)?;
        c.draw_series(
            l.points
                .iter()
                .map(|p| Circle::new((p.0, p.1), k.width + 1, k.color.filled())),
        )
        .map_err(err)?;
    }

    // Throughput.
    let (ylo, yhi) = (gmin / 1.5, gmax * 1.5);
    let mut c = ChartBuilder::on(&right)
        .caption(
            "one-way throughput, payload GB/s (higher is better)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (smin..smax).log_scale().with_key_points(x_ticks),
            (ylo..yhi)
                .log_scale()
                .with_key_points(decade_ticks(ylo, yhi)),
        )
        .map_err(err)?;
    c.configure_mesh()
        .x_label_formatter(&fmt_size)
        .y_label_formatter(&|v| gb_label(*v))
        .x_desc("message size")
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    for (v, name) in &memcpy {
        c.draw_series(DashedLineSeries::new(
            [(smin, *v), (smax, *v)],
            8,
            6,
            RGBColor(140, 140, 140).stroke_width(2),
        ))
        .map_err(err)?;
        c.draw_series(std::iter::once(Text::new(
            format!("{name}, one thread: {v:.1} GB/s"),
            (smin * 1.15, *v),
            note_style(),
        )))
        .map_err(err)?;
    }
    for l in &lines {
        let k = look(l.transport);
        let style = k.color.stroke_width(k.width);
        let pts: Vec<(f64, f64)> = l
            .points
            .iter()
            .filter(|p| p.2 > 0.0)
            .map(|p| (p.0, p.2))
            .collect();
        c.draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(err)?;
        c.draw_series(
            pts.iter()
                .map(|&p| Circle::new(p, k.width + 1, k.color.filled())),
        )
        .map_err(err)?;
    }

    // Legend: the transports in table order, the floor last.
    let mut y = 60;
    let font = ("sans-serif", 14).into_font();
    let order = lines
        .iter()
        .filter(|l| l.transport == Transport::Stream)
        .chain(lines.iter().filter(|l| l.transport != Transport::Stream));
    for l in order {
        let k = look(l.transport);
        legend
            .draw(&PathElement::new(
                vec![(10, y), (45, y)],
                k.color.stroke_width(k.width),
            ))
            .map_err(err)?;
        legend
            .draw(&Circle::new((27, y), k.width + 1, k.color.filled()))
            .map_err(err)?;
        legend
            .draw(&Text::new(l.label.clone(), (55, y - 8), font.clone()))
            .map_err(err)?;
        y += 22;
    }
    legend
        .draw(&PathElement::new(
            vec![(10, y), (45, y)],
            RGBColor(140, 140, 140).stroke_width(2),
        ))
        .map_err(err)?;
    legend
        .draw(&Text::new("floor (dashed)", (55, y - 8), font.clone()))
        .map_err(err)?;
    y += 34;
    let note = ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90));
    for line in [
        "Pinned to two cores; interleaved rounds.".to_string(),
        "Above 1 MiB, shmsock streams a".to_string(),
        "message through the ring in fragments.".to_string(),
        "iceoryx2 poll ~ shmsock Spin,".to_string(),
        "iceoryx2 event ~ shmsock Block.".to_string(),
        format!("Run took {:.0} s.", res.elapsed.as_secs_f64()),
        // A busy machine makes the picture noisy: say how busy it was.
        std::fs::read_to_string("/proc/loadavg").map_or_else(
            |_| String::new(),
            |l| {
                let w: Vec<&str> = l.split_whitespace().take(3).collect();
                format!("Load average at the end: {}.", w.join(" "))
            },
        ),
    ] {
        legend
            .draw(&Text::new(line, (10, y), note.clone()))
            .map_err(err)?;
        y += 17;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::run::{Floors, Results, Row, RttStats, Throughput};
    use super::*;

    fn stats(p50: u64) -> RttStats {
        RttStats {
            samples: 10,
            p50,
            p99: 2 * p50,
            p999: 3 * p50,
        }
    }

    #[test]
    fn draws_every_transport_and_the_floor() {
        let ts = [
            Transport::Stream,
            Transport::Shm(Wait::Spin, Api::Copy),
            Transport::Iceoryx2(IoxWait::Event, IoxApi::Loan),
        ];
        let mut rows = Vec::new();
        for (i, size) in [64usize, 1 << 20, 16 << 20].into_iter().enumerate() {
            for (k, &t) in ts.iter().enumerate() {
                rows.push(Row {
                    size,
                    transport: t,
                    rtt: stats(1_000 * (i as u64 + 1) * (k as u64 + 1)),
                    thr: Throughput {
                        messages: 100,
                        bytes_per_s: 1e8 * (i as f64 + 1.0),
                        msgs_per_s: 1e3,
                    },
                });
            }
        }
        let res = Results {
            rows,
            skipped: Vec::new(),
            floors: Floors {
                cacheline: stats(250),
                cacheline_pause: stats(300),
                memcpy: 5e9,
                memcpy_hot: 17e9,
                by_size: Vec::new(),
            },
            elapsed: Duration::from_secs(1),
        };
        let path = std::env::temp_dir().join(format!("shmsock-plot-{}.svg", std::process::id()));
        svg(&res, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..80]);
        for label in [
            "unix stream",
            "shmsock Spin send",
            "iceoryx2 event loan",
            "floor: cache-line round trip 250 ns",
            "16 MiB",
        ] {
            assert!(text.contains(label), "no {label:?} in the SVG");
        }
    }
}
