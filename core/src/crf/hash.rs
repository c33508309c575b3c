//! Open-addressing hash table from lattice keys to dense vertex ids (§4.1.1, §10.4).
//!
//! A permutohedral lattice point in d dimensions is identified by d integer coordinates (the
//! (d+1)-th is implied, they sum to 0). The table maps each key to the order in which it was
//! first inserted, so vertex values can live in one dense array. Coordinates are `i16` as in
//! the reference library: features are scaled so that coordinates stay far inside that range.

/// Marks an empty slot.
const EMPTY: u32 = u32::MAX;

/// Key → vertex id table with linear probing.
pub(crate) struct KeyTable {
    key_size: usize,
    /// Keys of the inserted vertices, `key_size` each, in id order.
    keys: Vec<i16>,
    /// Slot → vertex id (or `EMPTY`); its length is a power of two.
    slots: Vec<u32>,
    len: usize,
}

impl KeyTable {
    /// A table for keys of `key_size` coordinates, sized for about `expected` vertices.
    pub(crate) fn new(key_size: usize, expected: usize) -> Self {
        let cap = (2 * expected.max(8)).next_power_of_two();
        KeyTable {
            key_size,
            keys: Vec::with_capacity(expected * key_size),
            slots: vec![EMPTY; cap],
            len: 0,
        }
    }

    /// Number of vertices inserted.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The key of vertex `id`.
    pub(crate) fn key(&self, id: usize) -> &[i16] {
        &self.keys[id * self.key_size..(id + 1) * self.key_size]
    }

    fn hash(key: &[i16]) -> usize {
        // Multiplicative mixing per coordinate, then a final avalanche so that the low bits
        // used by the power-of-two mask depend on every coordinate.
        let mut h: u64 = 0;
        for &k in key {
            h = (h ^ (k as u16 as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        (h ^ (h >> 29)) as usize
    }

    /// The id of `key`, if present.
    pub(crate) fn find(&self, key: &[i16]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut h = Self::hash(key) & mask;
        loop {
            let e = self.slots[h];
            if e == EMPTY {
                return None;
            }
            if self.key(e as usize) == key {
                return Some(e);
            }
            h = (h + 1) & mask;
        }
    }

    /// The id of `key`, inserting it with the next free id when absent.
    pub(crate) fn find_or_insert(&mut self, key: &[i16]) -> u32 {
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut h = Self::hash(key) & mask;
        loop {
            let e = self.slots[h];
            if e == EMPTY {
                let id = self.len as u32;
                self.keys.extend_from_slice(key);
                self.slots[h] = id;
                self.len += 1;
                return id;
            }
            if self.key(e as usize) == key {
                return e;
            }
            h = (h + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let cap = self.slots.len() * 2;
        let mask = cap - 1;
        let mut slots = vec![EMPTY; cap];
        for id in 0..self.len {
            let mut h = Self::hash(self.key(id)) & mask;
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
    fn ids_are_dense_and_stable_across_growth() {
        let mut t = KeyTable::new(3, 1);
        let keys: Vec<[i16; 3]> = (0..500).map(|i| [i as i16, -(i as i16), 7]).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.find_or_insert(k), i as u32);
        }
        assert_eq!(t.len(), 500);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.find(k), Some(i as u32));
            assert_eq!(t.find_or_insert(k), i as u32);
            assert_eq!(t.key(i), k);
        }
        assert_eq!(t.find(&[1, 1, 1]), None);
    }
}
