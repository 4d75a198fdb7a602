//! The on-disk layout: redb table definitions and the byte encodings of
//! their keys and values. Everything that decides what a byte in the file
//! means lives here, so a format change has one place to look.

use jmt::storage::{Node, NodeKey};
use jmt::{KeyHash, Version};
use redb::TableDefinition;

use crate::StorageError;

/// Raw key -> latest value, so that a plain read is one lookup instead of a
/// walk down the tree.
pub(crate) const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");

/// Tree nodes: [`encode_node_key`] -> borsh(`Node`).
pub(crate) const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_nodes");

/// Value history: [`encode_value_key`] -> [`encode_value`]. The tree stores
/// only value hashes; proofs and `get_value_option` need the values by version.
pub(crate) const VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_values");

/// Nodes superseded at some version: `stale_since_version` (BE) ++
/// [`encode_node_key`]. Nothing prunes yet; recording them from the first
/// block means pruning can be added later without rebuilding the tree.
pub(crate) const STALE: TableDefinition<&[u8], ()> = TableDefinition::new("jmt_stale");

/// Small named records: format version, committed height, app hash.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(crate) const META_FORMAT: &str = "format";
pub(crate) const META_HEIGHT: &str = "height";
pub(crate) const META_APP_HASH: &str = "app_hash";

/// Bumped whenever an encoding in this file changes meaning.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Node key: version big-endian, then borsh(`NodeKey`). The version prefix
/// keeps one version's nodes together and in version order (borsh alone
/// writes the version little-endian, which would scatter them); the full
/// borsh form after it decodes back without depending on jmt internals.
pub(crate) fn encode_node_key(key: &NodeKey) -> Result<Vec<u8>, StorageError> {
    let mut out = key.version().to_be_bytes().to_vec();
    borsh::to_writer(&mut out, key).map_err(|e| StorageError::Corrupt(format!("encoding node key: {e}")))?;
    Ok(out)
}

pub(crate) fn decode_node_key(bytes: &[u8]) -> Result<NodeKey, StorageError> {
    let rest = bytes.get(8..).ok_or_else(|| StorageError::Corrupt("node key shorter than its version".into()))?;
    borsh::from_slice(rest).map_err(|e| StorageError::Corrupt(format!("node key: {e}")))
}

pub(crate) fn encode_node(node: &Node) -> Result<Vec<u8>, StorageError> {
    borsh::to_vec(node).map_err(|e| StorageError::Corrupt(format!("encoding node: {e}")))
}

pub(crate) fn decode_node(bytes: &[u8]) -> Result<Node, StorageError> {
    borsh::from_slice(bytes).map_err(|e| StorageError::Corrupt(format!("node: {e}")))
}

/// Value-history key: key hash, then version big-endian, so that all versions
/// of one key are adjacent and ordered; "latest version <= v" is then the
/// last entry of a range scan.
pub(crate) fn encode_value_key(key_hash: KeyHash, version: Version) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(&key_hash.0);
    out[32..].copy_from_slice(&version.to_be_bytes());
    out
}

/// A value-history entry: `0` alone for a deletion (the tombstone must be
/// stored, or an older value would show through), `1` ++ bytes for a value.
pub(crate) fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(v) => {
            let mut out = Vec::with_capacity(v.len() + 1);
            out.push(1);
            out.extend_from_slice(v);
            out
        }
    }
}

pub(crate) fn decode_value(bytes: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
    match bytes.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, v)) => Ok(Some(v.to_vec())),
        _ => Err(StorageError::Corrupt("value history entry has a bad tag".into())),
    }
}

pub(crate) fn encode_stale_key(since: Version, key: &NodeKey) -> Result<Vec<u8>, StorageError> {
    let mut out = since.to_be_bytes().to_vec();
    out.extend_from_slice(&encode_node_key(key)?);
    Ok(out)
}

/// The committed (height, app hash) from the meta table, in any transaction.
pub(crate) fn read_meta(meta: &impl redb::ReadableTable<&'static str, &'static [u8]>) -> Result<(u64, [u8; 32]), StorageError> {
    let height = match meta.get(META_HEIGHT).map_err(StorageError::db)? {
        Some(v) => decode_u64(v.value(), "height")?,
        None => return Err(StorageError::Corrupt("height record missing".into())),
    };
    let app_hash = match meta.get(META_APP_HASH).map_err(StorageError::db)? {
        Some(v) => decode_hash(v.value())?,
        None => return Err(StorageError::Corrupt("app hash record missing".into())),
    };
    Ok((height, app_hash))
}

pub(crate) fn decode_u64(bytes: &[u8], what: &str) -> Result<u64, StorageError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StorageError::Corrupt(format!("{what} is not 8 bytes")))?;
    Ok(u64::from_be_bytes(arr))
}

pub(crate) fn decode_hash(bytes: &[u8]) -> Result<[u8; 32], StorageError> {
    bytes.try_into().map_err(|_| StorageError::Corrupt("app hash is not 32 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jmt::storage::NibblePath;

    #[test]
    fn node_keys_round_trip_and_sort_by_version() {
        // jmt keeps NibblePath's constructor private; borsh is public:
        // num_nibbles as u64 LE, then the bytes as a u32-length vector.
        let two_nibbles: NibblePath = borsh::from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xab]).expect("path");
        let a = NodeKey::new(2, two_nibbles);
        let b = NodeKey::new(256, std::iter::empty().collect());
        let ea = encode_node_key(&a).expect("encode");
        let eb = encode_node_key(&b).expect("encode");
        assert_eq!(decode_node_key(&ea).expect("decode"), a);
        assert_eq!(decode_node_key(&eb).expect("decode"), b);
        // 2 < 256 must hold bytewise too (it would not with little-endian).
        assert!(ea < eb);
    }

    #[test]
    fn values_round_trip_including_tombstones_and_empty_values() {
        for v in [None, Some(&b""[..]), Some(&b"xyz"[..])] {
            assert_eq!(decode_value(&encode_value(v)).expect("decode"), v.map(<[u8]>::to_vec));
        }
        assert!(decode_value(&[]).is_err());
        assert!(decode_value(&[0, 1]).is_err());
        assert!(decode_value(&[2]).is_err());
    }
}
