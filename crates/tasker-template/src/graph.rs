//! The dependency graph of a task template: roots, leaves, levels, a topological execution
//! order, the critical path, cycle detection, and Mermaid / Graphviz DOT / text exports
//! (every `depends_on_steps` entry counts; the Rails engine dropped all but the
//! first from the graph).
//!
//! Iterative algorithms only, so a 10,000-step chain cannot overflow the stack.

use std::collections::HashMap;
use std::fmt::Write as _;

/// The export formats of [`DependencyGraph::render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GraphFormat {
    /// A Mermaid `graph TD` flowchart.
    Mermaid,
    /// A Graphviz `digraph`.
    Dot,
    /// Levels and the critical path as plain text.
    Text,
}

impl std::str::FromStr for GraphFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mermaid" => Ok(Self::Mermaid),
            "dot" => Ok(Self::Dot),
            "text" => Ok(Self::Text),
            other => Err(format!(
                "unknown graph format `{other}` (expected mermaid, dot or text)"
            )),
        }
    }
}

/// Steps and their dependency edges (parent → child). Step order is declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyGraph {
    names: Vec<String>,
    index: HashMap<String, usize>,
    parents: Vec<Vec<usize>>,
    children: Vec<Vec<usize>>,
    /// `Some(levels)` when acyclic.
    levels: Option<Vec<usize>>,
}

impl DependencyGraph {
    /// Builds the graph from `(step, dependencies)` pairs. Dependencies that name no step and
    /// repeated edges are ignored here: template validation reports them.
    pub fn new<'a, I, D>(steps: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, D)>,
        D: IntoIterator<Item = &'a str>,
    {
        let steps: Vec<(&str, Vec<&str>)> = steps
            .into_iter()
            .map(|(name, deps)| (name, deps.into_iter().collect()))
            .collect();
        let mut names = Vec::with_capacity(steps.len());
        let mut index = HashMap::with_capacity(steps.len());
        for (name, _) in &steps {
            if !index.contains_key(*name) {
                index.insert((*name).to_owned(), names.len());
                names.push((*name).to_owned());
            }
        }
        let mut parents = vec![Vec::new(); names.len()];
        let mut children = vec![Vec::new(); names.len()];
        for (name, deps) in &steps {
            let child = index[*name];
            for dep in deps {
                if let Some(&parent) = index.get(*dep)
                    && !parents[child].contains(&parent)
                {
                    parents[child].push(parent);
                    children[parent].push(child);
                }
            }
        }
        let levels = compute_levels(&parents, &children);
        Self {
            names,
            index,
            parents,
            children,
            levels,
        }
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no steps.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Number of dependency edges.
    pub fn edge_count(&self) -> usize {
        self.parents.iter().map(Vec::len).sum()
    }

    /// Step names in declaration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The declaration index of `step`.
    pub fn position(&self, step: &str) -> Option<usize> {
        self.index.get(step).copied()
    }

    /// The steps `step` depends on.
    pub fn parents(&self, step: &str) -> Vec<&str> {
        self.position(step)
            .map(|i| self.named(&self.parents[i]))
            .unwrap_or_default()
    }

    /// The steps that depend on `step`.
    pub fn children(&self, step: &str) -> Vec<&str> {
        self.position(step)
            .map(|i| self.named(&self.children[i]))
            .unwrap_or_default()
    }

    /// Every edge as `(parent, child)`, grouped by child in declaration order.
    pub fn edges(&self) -> Vec<(&str, &str)> {
        let mut edges = Vec::with_capacity(self.edge_count());
        for (child, parents) in self.parents.iter().enumerate() {
            for &parent in parents {
                edges.push((self.names[parent].as_str(), self.names[child].as_str()));
            }
        }
        edges
    }

    /// Steps with no dependencies.
    pub fn roots(&self) -> Vec<&str> {
        self.filtered(|i| self.parents[i].is_empty())
    }

    /// Steps nothing depends on.
    pub fn leaves(&self) -> Vec<&str> {
        self.filtered(|i| self.children[i].is_empty())
    }

    /// True when some dependency chain loops back on itself.
    pub fn has_cycle(&self) -> bool {
        self.levels.is_none()
    }

    /// One cycle, as the steps on it in dependency order with the first step repeated at the
    /// end (`a → b → a`), or `None` for a DAG.
    pub fn find_cycle(&self) -> Option<Vec<&str>> {
        if self.levels.is_some() {
            return None;
        }
        // Iterative DFS along parent → child edges; a grey node reached again closes a cycle.
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let mut colour = vec![WHITE; self.len()];
        for start in 0..self.len() {
            if colour[start] != WHITE {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            colour[start] = GREY;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&child) = self.children[node].get(*next) {
                    *next += 1;
                    match colour[child] {
                        WHITE => {
                            colour[child] = GREY;
                            stack.push((child, 0));
                        }
                        GREY => {
                            let from = stack.iter().position(|&(n, _)| n == child).unwrap_or(0);
                            let mut cycle: Vec<&str> = stack[from..]
                                .iter()
                                .map(|&(n, _)| self.names[n].as_str())
                                .collect();
                            cycle.push(self.names[child].as_str());
                            return Some(cycle);
                        }
                        _ => {}
                    }
                } else {
                    colour[node] = BLACK;
                    stack.pop();
                }
            }
        }
        None
    }

    /// Each step's level: 0 for roots, else one more than its deepest dependency. `None` when
    /// the graph has a cycle.
    pub fn levels(&self) -> Option<Vec<(&str, usize)>> {
        let levels = self.levels.as_ref()?;
        Some(
            self.names
                .iter()
                .map(String::as_str)
                .zip(levels.iter().copied())
                .collect(),
        )
    }

    /// A topological order: by level, then declaration order, so every step comes after all of
    /// its dependencies. `None` when the graph has a cycle.
    pub fn execution_order(&self) -> Option<Vec<&str>> {
        let levels = self.levels.as_ref()?;
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| (levels[i], i));
        Some(self.named(&order))
    }

    /// The longest dependency chain, root first (ties go to the earlier-declared step). Its
    /// length is the critical path length: the fewest sequential rounds the task needs.
    pub fn critical_path(&self) -> Option<Vec<&str>> {
        let levels = self.levels.as_ref()?;
        let Some(mut node) = (0..self.len()).max_by_key(|&i| (levels[i], std::cmp::Reverse(i)))
        else {
            return Some(Vec::new());
        };
        let mut path = vec![node];
        while levels[node] > 0 {
            node = *self.parents[node]
                .iter()
                .filter(|&&p| levels[p] + 1 == levels[node])
                .min()
                .expect("a step above level 0 has a parent one level below");
            path.push(node);
        }
        path.reverse();
        Some(self.named(&path))
    }

    /// The most steps on one level: how many could run at once on an idle engine.
    pub fn max_parallelism(&self) -> usize {
        let Some(levels) = &self.levels else { return 0 };
        let mut width = HashMap::new();
        for &level in levels {
            *width.entry(level).or_insert(0usize) += 1;
        }
        width.into_values().max().unwrap_or(0)
    }

    /// Renders the graph in `format`.
    pub fn render(&self, format: GraphFormat) -> String {
        match format {
            GraphFormat::Mermaid => self.to_mermaid(),
            GraphFormat::Dot => self.to_dot(),
            GraphFormat::Text => self.to_text(),
        }
    }

    /// A Mermaid flowchart. Node ids are positional (`s0`, `s1`, ...) because step names may be
    /// Mermaid keywords such as `end`; labels carry the names.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("graph TD\n");
        for (i, name) in self.names.iter().enumerate() {
            let _ = writeln!(out, "    s{i}[\"{}\"]", name.replace('"', "#quot;"));
        }
        for (child, parents) in self.parents.iter().enumerate() {
            for parent in parents {
                let _ = writeln!(out, "    s{parent} --> s{child}");
            }
        }
        out
    }

    /// A Graphviz digraph, top to bottom.
    pub fn to_dot(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = String::from("digraph workflow {\n    rankdir=TB;\n    node [shape=box];\n");
        for name in &self.names {
            let _ = writeln!(out, "    {};", quote(name));
        }
        for (parent, child) in self.edges() {
            let _ = writeln!(out, "    {} -> {};", quote(parent), quote(child));
        }
        out.push_str("}\n");
        out
    }

    /// Levels, roots, leaves and the critical path as plain text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let Some(levels) = &self.levels else {
            let cycle = self.find_cycle().unwrap_or_default().join(" -> ");
            let _ = writeln!(out, "dependency cycle: {cycle}");
            return out;
        };
        let depth = levels.iter().copied().max().map_or(0, |d| d + 1);
        for level in 0..depth {
            let on_level = self.filtered(|i| levels[i] == level);
            let _ = writeln!(out, "level {level}: {}", on_level.join(", "));
        }
        let _ = writeln!(out, "roots: {}", self.roots().join(", "));
        let _ = writeln!(out, "leaves: {}", self.leaves().join(", "));
        let critical = self.critical_path().unwrap_or_default();
        let _ = writeln!(
            out,
            "critical path ({} steps): {}",
            critical.len(),
            critical.join(" -> ")
        );
        out
    }

    fn named(&self, indices: &[usize]) -> Vec<&str> {
        indices.iter().map(|&i| self.names[i].as_str()).collect()
    }

    fn filtered(&self, keep: impl Fn(usize) -> bool) -> Vec<&str> {
        (0..self.len())
            .filter(|&i| keep(i))
            .map(|i| self.names[i].as_str())
            .collect()
    }
}

/// Kahn's algorithm, carrying each node's level; `None` if some node is never freed (a cycle).
fn compute_levels(parents: &[Vec<usize>], children: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut waiting: Vec<usize> = parents.iter().map(Vec::len).collect();
    let mut levels = vec![0usize; parents.len()];
    let mut ready: Vec<usize> = (0..parents.len()).filter(|&i| waiting[i] == 0).collect();
    let mut freed = 0;
    while let Some(node) = ready.pop() {
        freed += 1;
        for &child in &children[node] {
            levels[child] = levels[child].max(levels[node] + 1);
            waiting[child] -= 1;
            if waiting[child] == 0 {
                ready.push(child);
            }
        }
    }
    (freed == parents.len()).then_some(levels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn graph(steps: &[(&'static str, &[&'static str])]) -> DependencyGraph {
        DependencyGraph::new(steps.iter().map(|(n, d)| (*n, d.iter().copied())))
    }

    fn diamond() -> DependencyGraph {
        graph(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])])
    }

    #[test]
    fn diamond_analysis() {
        let g = diamond();
        assert_eq!(g.roots(), ["a"]);
        assert_eq!(g.leaves(), ["d"]);
        assert_eq!(g.execution_order().unwrap(), ["a", "b", "c", "d"]);
        assert_eq!(
            g.levels().unwrap(),
            [("a", 0), ("b", 1), ("c", 1), ("d", 2)]
        );
        assert_eq!(g.critical_path().unwrap(), ["a", "b", "d"]);
        assert_eq!(g.max_parallelism(), 2);
        assert_eq!(g.edge_count(), 4);
        assert_eq!(g.parents("d"), ["b", "c"]);
        assert_eq!(g.children("a"), ["b", "c"]);
        assert!(g.find_cycle().is_none());
    }

    #[test]
    fn declaration_order_does_not_have_to_be_topological() {
        let g = graph(&[
            ("last", &["middle"]),
            ("middle", &["first"]),
            ("first", &[]),
        ]);
        assert_eq!(g.execution_order().unwrap(), ["first", "middle", "last"]);
        assert_eq!(g.critical_path().unwrap(), ["first", "middle", "last"]);
    }

    #[test]
    fn cycles_are_found_and_listed() {
        let g = graph(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        assert!(g.has_cycle());
        assert_eq!(g.find_cycle().unwrap(), ["a", "b", "c", "a"]);
        assert!(g.execution_order().is_none());
        let self_loop = graph(&[("x", &["x"])]);
        assert_eq!(self_loop.find_cycle().unwrap(), ["x", "x"]);
    }

    #[test]
    fn long_chains_do_not_overflow() {
        let names: Vec<String> = (0..20_000).map(|i| format!("s{i}")).collect();
        let g = DependencyGraph::new(names.iter().enumerate().map(|(i, n)| {
            let dep = if i == 0 {
                None
            } else {
                Some(names[i - 1].as_str())
            };
            (n.as_str(), dep)
        }));
        assert_eq!(g.critical_path().unwrap().len(), 20_000);
        let looped = DependencyGraph::new(names.iter().enumerate().map(|(i, n)| {
            let dep = names[(i + names.len() - 1) % names.len()].as_str();
            (n.as_str(), Some(dep))
        }));
        assert_eq!(looped.find_cycle().unwrap().len(), 20_001);
    }

    #[test]
    fn exports() {
        let g = diamond();
        expect![[r#"
            graph TD
                s0["a"]
                s1["b"]
                s2["c"]
                s3["d"]
                s0 --> s1
                s0 --> s2
                s1 --> s3
                s2 --> s3
        "#]]
        .assert_eq(&g.render(GraphFormat::Mermaid));
        expect![[r#"
            digraph workflow {
                rankdir=TB;
                node [shape=box];
                "a";
                "b";
                "c";
                "d";
                "a" -> "b";
                "a" -> "c";
                "b" -> "d";
                "c" -> "d";
            }
        "#]]
        .assert_eq(&g.render(GraphFormat::Dot));
        expect![[r#"
            level 0: a
            level 1: b, c
            level 2: d
            roots: a
            leaves: d
            critical path (3 steps): a -> b -> d
        "#]]
        .assert_eq(&g.render(GraphFormat::Text));
        assert_eq!("dot".parse::<GraphFormat>(), Ok(GraphFormat::Dot));
        assert!("svg".parse::<GraphFormat>().unwrap_err().contains("svg"));
    }
}
