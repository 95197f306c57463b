//! What `--json` prints for layers, images and containers: containers-storage's keys,
//! types and shapes (its Go structs' JSON tags, empty fields left out as `omitempty`
//! leaves them out), so a jq pipeline written for `containers-storage` reads strata's.
//! What strata knows beyond them (a layer's driver records, mount count) is in the
//! plain output.

use std::collections::BTreeMap;

use catalog::{BigDataInfo, ContainerRecord, ImageRecord, LayerView, OwnerIds};
use serde::Serialize;

/// A layer as containers-storage's `Layer` serialises.
#[derive(Serialize)]
pub struct Layer<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    names: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    metadata: &'a str,
    created: Rfc3339,
    #[serde(
        rename = "compressed-diff-digest",
        skip_serializing_if = "Option::is_none"
    )]
    compressed_digest: Option<&'a str>,
    #[serde(rename = "compressed-size", skip_serializing_if = "Option::is_none")]
    compressed_size: Option<u64>,
    #[serde(rename = "diff-digest", skip_serializing_if = "Option::is_none")]
    uncompressed_digest: Option<&'a str>,
    #[serde(rename = "diff-size", skip_serializing_if = "Option::is_none")]
    uncompressed_size: Option<u64>,
    #[serde(
        rename = "big-data-names",
        skip_serializing_if = "<[String]>::is_empty"
    )]
    big_data_names: &'a [String],
    #[serde(rename = "uidset", skip_serializing_if = "OwnerIds::is_empty")]
    uids: OwnerIds<'a>,
    #[serde(rename = "gidset", skip_serializing_if = "OwnerIds::is_empty")]
    gids: OwnerIds<'a>,
}

impl<'a> From<&LayerView<'a>> for Layer<'a> {
    fn from(l: &LayerView<'a>) -> Self {
        // containers-storage leaves a zero size out (omitempty), as it does an empty layer's.
        let nonzero = |s: Option<u64>| s.filter(|&s| s > 0);
        Layer {
            id: l.id,
            names: l.names,
            parent: l.parent,
            metadata: l.metadata,
            created: Rfc3339(l.created),
            compressed_digest: l.compressed_digest,
            compressed_size: nonzero(l.compressed_size),
            uncompressed_digest: l.uncompressed_digest,
            uncompressed_size: nonzero(l.uncompressed_size),
            big_data_names: l.big_data_names,
            uids: l.uids,
            gids: l.gids,
        }
    }
}

/// Big data as containers-storage lists it beside an image or a container: names, and
/// sizes and digests by name.
#[derive(Serialize)]
struct BigData<'a> {
    #[serde(rename = "big-data-names", skip_serializing_if = "Vec::is_empty")]
    names: Vec<&'a str>,
    #[serde(rename = "big-data-sizes", skip_serializing_if = "BTreeMap::is_empty")]
    sizes: BTreeMap<&'a str, u64>,
    #[serde(
        rename = "big-data-digests",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    digests: BTreeMap<&'a str, &'a str>,
}

impl<'a> BigData<'a> {
    fn of(items: &'a [BigDataInfo]) -> Self {
        BigData {
            names: items.iter().map(|b| b.key.as_str()).collect(),
            sizes: items.iter().map(|b| (b.key.as_str(), b.size)).collect(),
            digests: items
                .iter()
                .map(|b| (b.key.as_str(), b.digest.as_str()))
                .collect(),
        }
    }
}

/// An image as containers-storage's `Image` serialises.
#[derive(Serialize)]
pub struct Image<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    names: &'a [String],
    #[serde(rename = "names-history", skip_serializing_if = "<[String]>::is_empty")]
    names_history: &'a [String],
    #[serde(rename = "layer", skip_serializing_if = "Option::is_none")]
    top_layer: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    metadata: &'a str,
    #[serde(flatten)]
    big_data: BigData<'a>,
    created: Rfc3339,
}

impl<'a> From<&'a ImageRecord> for Image<'a> {
    fn from(i: &'a ImageRecord) -> Self {
        Image {
            id: &i.id,
            digest: i.digest.as_deref(),
            names: &i.names,
            names_history: &i.names_history,
            top_layer: i.top_layer.as_deref(),
            metadata: &i.metadata,
            big_data: BigData::of(&i.big_data),
            created: Rfc3339(i.created),
        }
    }
}

/// A container's labels, as containers-storage records them at creation; strata sets no
/// SELinux labels, so both are empty.
#[derive(Serialize)]
struct ContainerFlags {
    #[serde(rename = "MountLabel")]
    mount_label: &'static str,
    #[serde(rename = "ProcessLabel")]
    process_label: &'static str,
}

/// A container as containers-storage's `Container` serialises.
#[derive(Serialize)]
pub struct Container<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    names: &'a [String],
    image: &'a str,
    layer: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    metadata: &'a str,
    #[serde(flatten)]
    big_data: BigData<'a>,
    created: Rfc3339,
    flags: ContainerFlags,
}

impl<'a> From<&'a ContainerRecord> for Container<'a> {
    fn from(c: &'a ContainerRecord) -> Self {
        Container {
            id: &c.id,
            names: &c.names,
            image: &c.image,
            layer: &c.layer,
            metadata: &c.metadata,
            big_data: BigData::of(&c.big_data),
            created: Rfc3339(c.created),
            flags: ContainerFlags {
                mount_label: "",
                process_label: "",
            },
        }
    }
}

/// Seconds since the epoch, serialised as containers-storage writes a time: RFC 3339 in
/// UTC (`2026-12-03T04:44:04Z`), written without an allocation (a listing writes one per
/// object; through `format!` it was a tenth of a JSON listing's instructions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub i64);

impl Rfc3339 {
    /// Year, month, day, hour, minute and second, in UTC.
    fn civil(self) -> [i64; 6] {
        let days = self.0.div_euclid(86_400);
        let of_day = self.0.rem_euclid(86_400);
        // Days to a civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        [
            year,
            month,
            day,
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60,
        ]
    }

    /// The text, for a year from 0 to 9999 (four digits); `None` outside them.
    fn text(self) -> Option<[u8; 20]> {
        let civil = self.civil();
        if !(0..=9999).contains(&civil[0]) {
            return None;
        }
        let mut out = *b"0000-00-00T00:00:00Z";
        for (mut value, (width, at)) in
            civil
                .into_iter()
                .zip([(4, 0), (2, 5), (2, 8), (2, 11), (2, 14), (2, 17)])
        {
            for i in (0..width).rev() {
                out[at + i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        Some(out)
    }
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(text) = self.text() {
            return f.write_str(&String::from_utf8_lossy(&text));
        }
        let [year, month, day, hour, minute, second] = self.civil();
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"
        )
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.text() {
            Some(text) => serializer.serialize_str(&String::from_utf8_lossy(&text)),
            None => serializer.collect_str(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_and_serialise_as_rfc3339_utc() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_796_273_044, "2026-12-03T04:44:04Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
            // Past four digits, the year is written whole.
            (253_402_300_800, "10000-01-01T00:00:00Z"),
        ] {
            assert_eq!(Rfc3339(secs).to_string(), want, "{secs}");
            assert_eq!(
                serde_json::to_string(&Rfc3339(secs)).unwrap(),
                format!("{want:?}")
            );
        }
    }
}
