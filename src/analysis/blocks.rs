//! A dataset read back as blocks of whole contexts: one row group at a time, with a context that
//! continues into the next row group held back and joined to it (labels need whole contexts).

use crate::store::{Dataset, HookInfo, Result, ShardReader, TokenRows};

/// Where a row lives: shard, row group, row within the row group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RowAddr {
    pub shard: u32,
    pub row_group: u32,
    pub row: u32,
}

/// Rows of whole contexts and their addresses.
#[derive(Debug, Default)]
pub struct Block {
    pub rows: TokenRows,
    pub addr: Vec<RowAddr>,
}

impl Block {
    fn len(&self) -> usize {
        self.addr.len()
    }

    /// Moves rows `at..` into a new block.
    fn split_off(&mut self, at: usize, d: usize) -> Block {
        let r = &mut self.rows;
        Block {
            rows: TokenRows {
                context_id: r.context_id.split_off(at),
                position: r.position.split_off(at),
                token: r.token.split_off(at),
                special: r.special.split_off(at),
                labels: r.labels.iter_mut().map(|c| c.split_off(at)).collect(),
                acts: r.acts.split_off((at * d).min(r.acts.len())),
            },
            addr: self.addr.split_off(at),
        }
    }

    /// Appends `other`'s rows.
    fn append(&mut self, mut other: Block) {
        let (r, o) = (&mut self.rows, &mut other.rows);
        r.context_id.append(&mut o.context_id);
        r.position.append(&mut o.position);
        r.token.append(&mut o.token);
        r.special.append(&mut o.special);
        for (a, b) in r.labels.iter_mut().zip(o.labels.iter_mut()) {
            a.append(b);
        }
        r.acts.append(&mut o.acts);
        self.addr.append(&mut other.addr);
    }

    /// Row ranges of each context, in order.
    pub fn contexts(&self) -> Vec<std::ops::Range<usize>> {
        let ids = &self.rows.context_id;
        let mut out = vec![];
        let mut start = 0;
        for i in 1..=ids.len() {
            if i == ids.len() || ids[i] != ids[start] {
                out.push(start..i);
                start = i;
            }
        }
        out
    }
}

/// Reads row groups in order (all of them, or a chosen list) and yields blocks of whole contexts.
pub struct BlockStream<'a> {
    dataset: &'a Dataset,
    hook: Option<HookInfo>,
    labels: Vec<String>,
    plan: Vec<(usize, usize)>,
    next: usize,
    reader: Option<(usize, ShardReader)>,
    carry: Option<Block>,
}

impl<'a> BlockStream<'a> {
    /// Every row group of every shard, in order.
    pub fn new(dataset: &'a Dataset, hook: Option<HookInfo>, labels: Vec<String>) -> Result<Self> {
        let mut plan = vec![];
        dataset.check_shards(&(0..dataset.shard_count()).collect::<Vec<_>>())?;
        for s in 0..dataset.shard_count() {
            let groups = dataset.shard_reader(s)?.row_groups().len();
            plan.extend((0..groups).map(|g| (s, g)));
        }
        Ok(BlockStream {
            dataset,
            hook,
            labels,
            plan,
            next: 0,
            reader: None,
            carry: None,
        })
    }

    /// Number of row groups to read.
    pub fn row_groups(&self) -> usize {
        self.plan.len()
    }

    /// The (shard, row group) pairs read, in order.
    pub fn plan(&self) -> &[(usize, usize)] {
        &self.plan
    }

    /// Starts again from the first row group.
    pub fn rewind(&mut self) {
        self.next = 0;
        self.carry = None;
    }

    /// Row groups read so far.
    pub fn position(&self) -> usize {
        self.next
    }

    /// Reads one row group without joining contexts across row groups.
    pub fn read_row_group(&mut self, shard: usize, group: usize) -> Result<Block> {
        // The open shard's reader is kept for the next row group of the same shard.
        let reader = match self.reader.take() {
            Some((s, r)) if s == shard => r,
            _ => self.dataset.shard_reader(shard)?,
        };
        let rows = reader.read_token_rows(group, self.hook.as_ref(), &self.labels);
        self.reader = Some((shard, reader));
        let rows = rows?;
        let addr = (0..rows.context_id.len())
            .map(|r| RowAddr {
                shard: shard as u32,
                row_group: group as u32,
                row: r as u32,
            })
            .collect();
        Ok(Block { rows, addr })
    }

    /// The next block of whole contexts, or None at the end.
    pub fn next_block(&mut self) -> Result<Option<Block>> {
        let d = self.hook.as_ref().map_or(0, |h| h.d);
        while self.next < self.plan.len() {
            let (shard, group) = self.plan[self.next];
            self.next += 1;
            let fresh = self.read_row_group(shard, group)?;
            let mut block = match self.carry.take() {
                Some(mut c) => {
                    c.append(fresh);
                    c
                }
                None => fresh,
            };
            // Shards hold whole contexts, so only a context that reaches the end of a row
            // group that is not its shard's last may continue in the next one.
            let more_in_shard = self.plan.get(self.next).is_some_and(|(s, _)| *s == shard);
            if more_in_shard && block.len() > 0 {
                let last = block.rows.context_id[block.len() - 1];
                let at = block
                    .rows
                    .context_id
                    .iter()
                    .rposition(|&c| c != last)
                    .map_or(0, |i| i + 1);
                let tail = block.split_off(at, d);
                self.carry = Some(tail);
            }
            if block.len() > 0 {
                return Ok(Some(block));
            }
        }
        Ok(self.carry.take().filter(|b| b.len() > 0))
    }
}
