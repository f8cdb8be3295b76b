//! A minimal reader of BTF (`/sys/kernel/btf/vmlinux`): byte offsets of struct members and
//! values of enum constants, which is all memwatch needs to walk from a task to its memory
//! cgroup. (aya-obj parses BTF too, but keeps member access private.)

use thiserror::Error;

const MAGIC: u16 = 0xeb9f;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF: bad magic or header")]
    Header,
    #[error("type section truncated at type {0}")]
    Truncated(u32),
    #[error("unknown BTF kind {kind} at type {id}")]
    Kind { id: u32, kind: u32 },
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    size_or_type: u32,
    /// Offset of the kind-specific data that follows the common header, in `types`.
    extra: usize,
}

/// Parsed BTF: an index over the raw bytes.
pub struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    index: Vec<Type>, // index[id - 1]
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

impl<'a> Btf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let magic = data.get(0..2).map(|m| u16::from_le_bytes([m[0], m[1]]));
        if magic != Some(MAGIC) {
            return Err(BtfError::Header);
        }
        let hdr = |i| u32_at(data, i).ok_or(BtfError::Header);
        let hdr_len = hdr(4)? as usize;
        let (type_off, type_len) = (hdr(8)? as usize, hdr(12)? as usize);
        let (str_off, str_len) = (hdr(16)? as usize, hdr(20)? as usize);
        let section = |off: usize, len: usize| data.get(hdr_len + off..hdr_len + off + len).ok_or(BtfError::Header);
        let types = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let mut index = Vec::new();
        let mut pos = 0;
        while pos < types.len() {
            let id = index.len() as u32 + 1;
            let (name_off, info, size_or_type) = match (u32_at(types, pos), u32_at(types, pos + 4), u32_at(types, pos + 8)) {
                (Some(a), Some(b), Some(c)) => (a, b, c),
                _ => return Err(BtfError::Truncated(id)),
            };
            let kind = (info >> 24) & 0x1f;
            let vlen = info & 0xffff;
            let extra = pos + 12;
            let extra_len = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen as usize,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen as usize,
                2 | 7 | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | 12 | 16 | KIND_TYPE_TAG => 0,
                _ => return Err(BtfError::Kind { id, kind }),
            };
            if extra + extra_len > types.len() {
                return Err(BtfError::Truncated(id));
            }
            index.push(Type { name_off, kind, vlen, kind_flag: info >> 31 == 1, size_or_type, extra });
            pos = extra + extra_len;
        }
        Ok(Btf { types, strings, index })
    }

    fn name(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or_default()
    }

    fn find(&self, kind: u32, name: &str) -> Option<&Type> {
        self.index.iter().find(|t| t.kind == kind && self.name(t.name_off) == name)
    }

    /// Byte offset of `member` in `struct name`, looking inside anonymous structs and unions.
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        let t = self.find(KIND_STRUCT, name)?;
        self.member_in(t, member, 0)
    }

    fn member_in(&self, t: &Type, member: &str, depth: u32) -> Option<u32> {
        if depth > 8 {
            return None;
        }
        for i in 0..t.vlen as usize {
            let m = t.extra + 12 * i;
            let (name_off, ty, off) = (u32_at(self.types, m)?, u32_at(self.types, m + 4)?, u32_at(self.types, m + 8)?);
            let bits = if t.kind_flag { off & 0x00ff_ffff } else { off };
            if name_off != 0 && self.name(name_off) == member {
                return (bits % 8 == 0).then_some(bits / 8);
            }
            if name_off == 0 {
                let inner = self.resolve(ty)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                    && let Some(o) = self.member_in(inner, member, depth + 1)
                {
                    return Some(bits / 8 + o);
                }
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..16 {
            let t = self.index.get((id as usize).checked_sub(1)?)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => id = t.size_or_type,
                _ => return Some(t),
            }
        }
        None
    }

    /// Value of the enumerator `value` in `enum name`.
    pub fn enum_value(&self, name: &str, value: &str) -> Option<i64> {
        let t = self.find(KIND_ENUM, name).or_else(|| self.find(KIND_ENUM64, name))?;
        let stride = if t.kind == KIND_ENUM { 8 } else { 12 };
        (0..t.vlen as usize).find_map(|i| {
            let e = t.extra + stride * i;
            if self.name(u32_at(self.types, e)?) != value {
                return None;
            }
            let lo = u32_at(self.types, e + 4)?;
            Some(if t.kind == KIND_ENUM { lo as i32 as i64 } else { ((u32_at(self.types, e + 8)? as u64) << 32 | lo as u64) as i64 })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a small BTF blob: `struct inner { int a; int b; }`,
    /// `struct outer { long x; union { int u; struct inner in; }; int target; }`,
    /// `enum ids { zero_id, memory_cgrp_id = 4 }`.
    pub(crate) fn sample() -> Vec<u8> {
        let mut strings = b"\0int\0inner\0a\0b\0outer\0x\0u\0in\0target\0ids\0zero_id\0memory_cgrp_id\0".to_vec();
        let s = |name: &str, strings: &Vec<u8>| {
            let needle = [b"\0", name.as_bytes(), b"\0"].concat();
            strings.windows(needle.len()).position(|w| w == needle).unwrap() as u32 + 1
        };
        let mut t: Vec<u8> = Vec::new();
        let put = |v: &[u32], t: &mut Vec<u8>| v.iter().for_each(|x| t.extend(x.to_le_bytes()));
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        // 1: int
        put(&[s("int", &strings), info(KIND_INT, 0), 4, 32], &mut t);
        // 2: struct inner
        put(&[s("inner", &strings), info(KIND_STRUCT, 2), 8], &mut t);
        put(&[s("a", &strings), 1, 0, s("b", &strings), 1, 32], &mut t);
        // 3: anonymous union { int u; struct inner in; }
        put(&[0, info(KIND_UNION, 2), 8], &mut t);
        put(&[s("u", &strings), 1, 0, s("in", &strings), 2, 0], &mut t);
        // 4: struct outer
        put(&[s("outer", &strings), info(KIND_STRUCT, 3), 24], &mut t);
        put(&[s("x", &strings), 1, 0, 0, 3, 64, s("target", &strings), 1, 128], &mut t);
        // 5: enum ids
        put(&[s("ids", &strings), info(KIND_ENUM, 2), 4], &mut t);
        put(&[s("zero_id", &strings), 0, s("memory_cgrp_id", &strings), 4], &mut t);
        strings.push(0);
        let mut out = Vec::new();
        out.extend(MAGIC.to_le_bytes());
        out.extend([1u8, 0]);
        for v in [24u32, 0, t.len() as u32, t.len() as u32, strings.len() as u32] {
            out.extend(v.to_le_bytes());
        }
        out.extend(t);
        out.extend(strings);
        out
    }

    #[test]
    fn member_offsets_including_anonymous_members() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.member_offset("outer", "x"), Some(0));
        assert_eq!(btf.member_offset("outer", "target"), Some(16));
        assert_eq!(btf.member_offset("outer", "u"), Some(8));
        assert_eq!(btf.member_offset("outer", "in"), Some(8));
        assert_eq!(btf.member_offset("inner", "b"), Some(4));
        assert_eq!(btf.member_offset("outer", "missing"), None);
        assert_eq!(btf.member_offset("nonesuch", "x"), None);
    }

    #[test]
    fn enum_values() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.enum_value("ids", "memory_cgrp_id"), Some(4));
        assert_eq!(btf.enum_value("ids", "zero_id"), Some(0));
        assert_eq!(btf.enum_value("ids", "cpu_cgrp_id"), None);
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert_eq!(Btf::parse(b"not btf at all").err(), Some(BtfError::Header));
        let mut data = sample();
        // Claim a longer type section than there is.
        data[12] = data[12].wrapping_add(200);
        assert!(Btf::parse(&data).is_err());
    }
}
