//! How shares become bucket ranges, laid out so that ramps move as few units as possible.
//!
//! ## The rules
//!
//! * **Rounding.** A treatment with share `s` gets `⌊s × 100 000 + 10⁻⁶⌋` buckets, a function
//!   of its own share only (the 10⁻⁶ absorbs float error such as 0.7 × 10⁵ = 69 999.99…).
//!   The control takes every bucket the treatments leave, so it absorbs the rounding: at most
//!   one bucket (0.001%) per treatment.
//! * **Lanes.** Every treatment owns a *lane*, a range of the bucket space, and occupies a
//!   run of `count` buckets at one edge of it (`from: start` or `from: end`). Everything not
//!   occupied by a treatment is the control's. Because a treatment's count depends only on
//!   its share and its run always starts at the same edge, a treatment that grows takes
//!   buckets only from the control, exactly as many as its count grew, and one that shrinks
//!   gives buckets only back to the control.
//! * **Lanes may not collide.** Two lanes are either disjoint, or the *same* range grown
//!   from opposite edges (a shared lane: the two runs meet in the middle, and only if the
//!   two shares together exceed the lane would they collide, which is an error).
//!
//! ## Defaults (no `lane` keys)
//!
//! Treatments are taken in name order (byte order), never in YAML order:
//! * one treatment: lane = the whole space, from the start (control holds the end);
//! * two treatments: both own the whole space, the first by name from the start, the
//!   second from the end, control in the middle. Every ramp (control down, treatments up)
//!   and every rollback is then exact and safe;
//! * three or more: the space is cut into equal lanes of `⌊100 000 / k⌋` buckets, in name
//!   order, each grown from its start. A treatment may not exceed its lane (1/k): declare
//!   lanes to go further. Adding or removing a treatment re-cuts the lanes, which
//!   `cohort check --against` reports as a reshuffle.
//!
//! No pure function of (unit, salt, config) keeps every ramp safe for three or more
//! treatments (if treatment 1 may grow to any share, the units treatment 2 gains must be
//! exactly those treatment 3 would gain); lanes trade that impossibility for a declared cap
//! per treatment (`max_weight`). See README.md, "Assignment and safe ramps".

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::hash::BUCKETS;

/// The edge a treatment grows from inside its lane (`lane.from` in routes.yaml).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum LaneEdge {
    #[default]
    Start,
    End,
}

/// Buckets for a share, by the rounding rule above.
pub fn buckets_for_share(share: f64) -> u32 {
    let b = (share * f64::from(BUCKETS) + 1e-6).floor();
    if b <= 0.0 {
        0
    } else if b >= f64::from(BUCKETS) {
        BUCKETS
    } else {
        b as u32
    }
}

/// A treatment's lane in buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub start: u32,
    pub size: u32,
    pub from: LaneEdge,
}

impl Lane {
    pub fn end(&self) -> u32 {
        self.start + self.size
    }

    /// The buckets a treatment with `count` buckets occupies in this lane.
    pub fn occupied(&self, count: u32) -> Range<u32> {
        match self.from {
            LaneEdge::Start => self.start..self.start + count,
            LaneEdge::End => self.end() - count..self.end(),
        }
    }

    fn shares_range_with(&self, other: &Lane) -> bool {
        self.start == other.start && self.size == other.size && self.from != other.from
    }

    fn overlaps(&self, other: &Lane) -> bool {
        self.start < other.end() && other.start < self.end()
    }
}

/// The default lanes for `k` treatments taken in name order (see the module doc).
pub fn default_lanes(k: usize) -> Vec<Lane> {
    match k {
        0 => Vec::new(),
        1 => vec![Lane {
            start: 0,
            size: BUCKETS,
            from: LaneEdge::Start,
        }],
        2 => vec![
            Lane {
                start: 0,
                size: BUCKETS,
                from: LaneEdge::Start,
            },
            Lane {
                start: 0,
                size: BUCKETS,
                from: LaneEdge::End,
            },
        ],
        _ => {
            let size = BUCKETS / k as u32;
            (0..k as u32)
                .map(|i| Lane {
                    start: i * size,
                    size,
                    from: LaneEdge::Start,
                })
                .collect()
        }
    }
}

/// A treatment to place: its index among the experiment's variants, lane and bucket count.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub variant: usize,
    pub lane: Lane,
    pub count: u32,
}

/// Why a set of placements does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The treatment asks for more buckets than its lane holds.
    ExceedsLane {
        variant: usize,
        count: u32,
        size: u32,
    },
    /// Two lanes overlap without being one shared lane.
    LanesOverlap { a: usize, b: usize },
    /// Two treatments of one shared lane ask for more than the lane holds together.
    SharedLaneFull { a: usize, b: usize, size: u32 },
    /// More than two treatments in one lane.
    LaneCrowded { a: usize, b: usize },
}

/// One contiguous run of buckets served by one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    pub start: u32,
    pub end: u32,
    pub variant: usize,
}

/// The whole bucket space, cut into runs: what `assign` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    segments: Vec<Segment>,
    /// `ends[i]` = `segments[i].end`, searched on the hot path.
    ends: Vec<u32>,
}

impl Layout {
    /// Lays out the treatments; the control fills every gap.
    pub fn build(control: usize, placements: &[Placement]) -> Result<Layout, LayoutError> {
        for (i, p) in placements.iter().enumerate() {
            if p.count > p.lane.size {
                return Err(LayoutError::ExceedsLane {
                    variant: p.variant,
                    count: p.count,
                    size: p.lane.size,
                });
            }
            for q in &placements[..i] {
                if q.lane.shares_range_with(&p.lane) {
                    if q.count + p.count > p.lane.size {
                        return Err(LayoutError::SharedLaneFull {
                            a: q.variant,
                            b: p.variant,
                            size: p.lane.size,
                        });
                    }
                } else if q.lane.overlaps(&p.lane) {
                    return Err(if q.lane == p.lane {
                        LayoutError::LaneCrowded {
                            a: q.variant,
                            b: p.variant,
                        }
                    } else {
                        LayoutError::LanesOverlap {
                            a: q.variant,
                            b: p.variant,
                        }
                    });
                }
            }
        }
        // A shared lane is a pair: a third lane on the same range overlaps one of them with
        // the same edge, which the loop above reports as LaneCrowded.
        let mut runs: Vec<Segment> = placements
            .iter()
            .filter(|p| p.count > 0)
            .map(|p| {
                let r = p.lane.occupied(p.count);
                Segment {
                    start: r.start,
                    end: r.end,
                    variant: p.variant,
                }
            })
            .collect();
        runs.sort_by_key(|s| s.start);

        let mut segments: Vec<Segment> = Vec::with_capacity(runs.len() * 2 + 1);
        let mut push = |seg: Segment| {
            if seg.start == seg.end {
                return;
            }
            match segments.last_mut() {
                Some(last) if last.variant == seg.variant && last.end == seg.start => {
                    last.end = seg.end
                }
                _ => segments.push(seg),
            }
        };
        let mut cursor = 0;
        for run in runs {
            push(Segment {
                start: cursor,
                end: run.start,
                variant: control,
            });
            push(run);
            cursor = run.end;
        }
        push(Segment {
            start: cursor,
            end: BUCKETS,
            variant: control,
        });
        let ends = segments.iter().map(|s| s.end).collect();
        Ok(Layout { segments, ends })
    }

    /// The variant index serving `bucket`.
    #[inline]
    pub fn variant_at(&self, bucket: u32) -> usize {
        let i = self.ends.partition_point(|&end| end <= bucket);
        // Segments cover [0, BUCKETS); a bucket past the end (impossible from `hash::bucket`)
        // is served by the last segment rather than panicking.
        let i = i.min(self.segments.len() - 1);
        self.segments[i].variant
    }

    /// The runs, in bucket order, covering the whole space.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// How many buckets each variant serves (index = variant).
    pub fn counts(&self, variants: usize) -> Vec<u32> {
        let mut counts = vec![0; variants];
        for s in &self.segments {
            counts[s.variant] += s.end - s.start;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(start: u32, size: u32, from: LaneEdge) -> Lane {
        Lane { start, size, from }
    }

    #[test]
    fn rounding_absorbs_float_error_and_clamps() {
        assert_eq!(buckets_for_share(0.7), 70_000);
        assert_eq!(buckets_for_share(0.1 + 0.2), 30_000);
        assert_eq!(buckets_for_share(1.0 / 3.0), 33_333);
        assert_eq!(buckets_for_share(0.0), 0);
        assert_eq!(buckets_for_share(1.0), BUCKETS);
        assert_eq!(buckets_for_share(0.000_004), 0);
        assert_eq!(buckets_for_share(0.000_01), 1);
    }

    #[test]
    fn two_treatments_grow_from_both_ends() {
        let lanes = default_lanes(2);
        let layout = Layout::build(
            0,
            &[
                Placement {
                    variant: 1,
                    lane: lanes[0],
                    count: 10_000,
                },
                Placement {
                    variant: 2,
                    lane: lanes[1],
                    count: 20_000,
                },
            ],
        )
        .unwrap();
        assert_eq!(
            layout.segments(),
            &[
                Segment {
                    start: 0,
                    end: 10_000,
                    variant: 1
                },
                Segment {
                    start: 10_000,
                    end: 80_000,
                    variant: 0
                },
                Segment {
                    start: 80_000,
                    end: BUCKETS,
                    variant: 2
                },
            ]
        );
        assert_eq!(layout.variant_at(0), 1);
        assert_eq!(layout.variant_at(9_999), 1);
        assert_eq!(layout.variant_at(10_000), 0);
        assert_eq!(layout.variant_at(BUCKETS - 1), 2);
        assert_eq!(layout.counts(3), vec![70_000, 10_000, 20_000]);
    }

    #[test]
    fn zero_share_treatments_and_full_promotion() {
        let lanes = default_lanes(2);
        let layout = Layout::build(
            0,
            &[
                Placement {
                    variant: 1,
                    lane: lanes[0],
                    count: BUCKETS,
                },
                Placement {
                    variant: 2,
                    lane: lanes[1],
                    count: 0,
                },
            ],
        )
        .unwrap();
        assert_eq!(
            layout.segments(),
            &[Segment {
                start: 0,
                end: BUCKETS,
                variant: 1
            }]
        );
    }

    #[test]
    fn collisions_are_reported() {
        let full = lane(0, BUCKETS, LaneEdge::Start);
        let err = Layout::build(
            0,
            &[
                Placement {
                    variant: 1,
                    lane: full,
                    count: 10,
                },
                Placement {
                    variant: 2,
                    lane: full,
                    count: 10,
                },
            ],
        );
        assert_eq!(err, Err(LayoutError::LaneCrowded { a: 1, b: 2 }));
        let err = Layout::build(
            0,
            &[
                Placement {
                    variant: 1,
                    lane: lane(0, 600, LaneEdge::Start),
                    count: 10,
                },
                Placement {
                    variant: 2,
                    lane: lane(500, 500, LaneEdge::Start),
                    count: 10,
                },
            ],
        );
        assert_eq!(err, Err(LayoutError::LanesOverlap { a: 1, b: 2 }));
        let err = Layout::build(
            0,
            &[
                Placement {
                    variant: 1,
                    lane: lane(0, 600, LaneEdge::Start),
                    count: 400,
                },
                Placement {
                    variant: 2,
                    lane: lane(0, 600, LaneEdge::End),
                    count: 201,
                },
            ],
        );
        assert_eq!(
            err,
            Err(LayoutError::SharedLaneFull {
                a: 1,
                b: 2,
                size: 600
            })
        );
        let err = Layout::build(
            0,
            &[Placement {
                variant: 1,
                lane: lane(0, 600, LaneEdge::Start),
                count: 601,
            }],
        );
        assert_eq!(
            err,
            Err(LayoutError::ExceedsLane {
                variant: 1,
                count: 601,
                size: 600
            })
        );
    }
}
