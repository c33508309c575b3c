//! Open-addressing hash table from lattice keys to dense vertex ids (§4.1.1, §10.4).
//!
//! A permutohedral lattice point in d dimensions is identified by d integer coordinates (the
//! (d+1)-th is implied, they sum to 0). Coordinates are `i16` as in the reference library
//! (features are scaled so that they stay far inside that range) and up to [`MAX_DIM`] of
//! them are packed into one `u128`, so hashing and comparing a key are a few instructions.
//! The table maps each key to the order in which it was first inserted, so vertex values can
//! live in one dense array.

/// Most coordinates a packed key holds.
pub(crate) const MAX_DIM: usize = 8;

/// Marks an empty slot.
const EMPTY: u32 = u32::MAX;

/// Packs up to [`MAX_DIM`] coordinates (16 bits each).
#[inline]
pub(crate) fn pack(coords: &[i16]) -> u128 {
    coords
        .iter()
        .enumerate()
        .fold(0u128, |k, (i, &c)| k | ((c as u16 as u128) << (16 * i)))
}

/// Coordinate `i` of a packed key.
#[inline]
pub(crate) fn coord(key: u128, i: usize) -> i16 {
    (key >> (16 * i)) as u16 as i16
}

/// Key → vertex id table with linear probing.
pub(crate) struct KeyTable {
    /// Keys of the inserted vertices, in id order.
    keys: Vec<u128>,
    /// Slot → vertex id (or `EMPTY`); its length is a power of two.
    slots: Vec<u32>,
}

impl KeyTable {
    /// An empty table. It starts small and doubles: lattices have far fewer vertices than
    /// points, and a compact table stays in cache.
    pub(crate) fn new() -> Self {
        KeyTable {
            keys: Vec::new(),
            slots: vec![EMPTY; 4096],
        }
    }

    /// Number of vertices inserted.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key of vertex `id`.
    pub(crate) fn key(&self, id: usize) -> u128 {
        self.keys[id]
    }

    #[inline]
    fn hash(key: u128) -> usize {
        let (lo, hi) = (key as u64, (key >> 64) as u64);
        let h = lo.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ hi.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        (h ^ (h >> 32)) as usize
    }

    /// The id of `key`, if present.
    pub(crate) fn find(&self, key: u128) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut h = Self::hash(key) & mask;
        loop {
            let e = self.slots[h];
            if e == EMPTY {
                return None;
            }
            if self.keys[e as usize] == key {
                return Some(e);
            }
            h = (h + 1) & mask;
        }
    }

    /// The id of `key`, inserting it with the next free id when absent.
    pub(crate) fn find_or_insert(&mut self, key: u128) -> u32 {
        let mask = self.slots.len() - 1;
        let mut h = Self::hash(key) & mask;
        loop {
            let e = self.slots[h];
            if e == EMPTY {
                let id = self.keys.len() as u32;
                self.keys.push(key);
                self.slots[h] = id;
                if 2 * self.keys.len() > self.slots.len() {
                    self.grow();
                }
                return id;
            }
            if self.keys[e as usize] == key {
                return e;
            }
            h = (h + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let cap = self.slots.len() * 2;
        let mask = cap - 1;
        let mut slots = vec![EMPTY; cap];
        for (id, &key) in self.keys.iter().enumerate() {
            let mut h = Self::hash(key) & mask;
            while slots[h] != EMPTY {
                h = (h + 1) & mask;
            }
            slots[h] = id as u32;
        }
        self.slots = slots;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        let c = [-3i16, 0, 32767, -32768, 5];
        let k = pack(&c);
        for (i, &v) in c.iter().enumerate() {
            assert_eq!(coord(k, i), v);
        }
        assert_ne!(pack(&[1, 0]), pack(&[0, 1]));
    }

    #[test]
    fn ids_are_dense_and_stable_across_growth() {
        let mut t = KeyTable::new();
        let keys: Vec<u128> = (0..20_000)
            .map(|i| pack(&[i as i16, -(i as i16), 7]))
            .collect();
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(t.find_or_insert(k), i as u32);
        }
        assert_eq!(t.len(), 20_000);
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(t.find(k), Some(i as u32));
            assert_eq!(t.find_or_insert(k), i as u32);
            assert_eq!(t.key(i), k);
        }
        assert_eq!(t.find(pack(&[1, 1, 1])), None);
    }
}
