//! `SmallList`: a list that keeps its first two items inline.

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// A short list that keeps up to two items inline: the write path (one mutation per write, one
/// or two backups per partition) then allocates nothing of its own. More go to a vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmallList<T> {
    first: Option<T>,
    second: Option<T>,
    rest: Vec<T>,
}

impl<T> Default for SmallList<T> {
    fn default() -> SmallList<T> {
        SmallList {
            first: None,
            second: None,
            rest: Vec::new(),
        }
    }
}

impl<T> SmallList<T> {
    /// An empty list (no allocation).
    pub fn new() -> SmallList<T> {
        SmallList::default()
    }

    /// Appends `item`.
    pub fn push(&mut self, item: T) {
        if self.first.is_none() {
            self.first = Some(item);
        } else if self.second.is_none() {
            self.second = Some(item);
        } else {
            self.rest.push(item);
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + usize::from(self.second.is_some()) + self.rest.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// The items in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.first
            .iter()
            .chain(self.second.iter())
            .chain(self.rest.iter())
    }

    /// Keeps the items for which `keep` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let items = std::mem::take(self);
        for item in items {
            if keep(&item) {
                self.push(item);
            }
        }
    }
}

impl<T> IntoIterator for SmallList<T> {
    type Item = T;
    type IntoIter = std::iter::Chain<
        std::iter::Chain<std::option::IntoIter<T>, std::option::IntoIter<T>>,
        std::vec::IntoIter<T>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.second).chain(self.rest)
    }
}

impl<T> FromIterator<T> for SmallList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> SmallList<T> {
        let mut list = SmallList::new();
        for item in iter {
            list.push(item);
        }
        list
    }
}

impl<T: Serialize> Serialize for SmallList<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for item in self.iter() {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SmallList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SmallList<T>, D::Error> {
        struct ListVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = SmallList<T>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SmallList<T>, A::Error> {
                let mut list = SmallList::new();
                while let Some(item) = seq.next_element()? {
                    list.push(item);
                }
                Ok(list)
            }
        }
        deserializer.deserialize_seq(ListVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_keep_their_order_inline_and_beyond() {
        for count in 0..6_u32 {
            let list: SmallList<u32> = (0..count).collect();
            assert_eq!(list.len(), count as usize);
            assert_eq!(list.is_empty(), count == 0);
            assert_eq!(
                list.iter().copied().collect::<Vec<_>>(),
                (0..count).collect::<Vec<_>>()
            );
            let encoded = postcard::to_stdvec(&list).expect("serializable");
            // The encoding is a plain sequence, as a `Vec` would be.
            assert_eq!(
                encoded,
                postcard::to_stdvec(&(0..count).collect::<Vec<_>>()).unwrap()
            );
            let decoded: SmallList<u32> = postcard::from_bytes(&encoded).expect("deserializable");
            assert_eq!(decoded, list);
            assert_eq!(
                decoded.into_iter().collect::<Vec<_>>(),
                (0..count).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn retain_keeps_the_chosen_items_in_order() {
        let mut list: SmallList<u32> = (0..7).collect();
        list.retain(|item| item % 3 != 0);
        assert_eq!(list.iter().copied().collect::<Vec<_>>(), vec![1, 2, 4, 5]);
        list.retain(|_| false);
        assert!(list.is_empty());
    }
}
