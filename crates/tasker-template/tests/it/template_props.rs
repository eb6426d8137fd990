//! Properties of template parsing and the dependency graph: random DAGs validate and order
//! every dependency first, random cyclic graphs are rejected with a real cycle, and no input
//! makes the parser panic.
//!
//! Sizes are small (at most 60 steps, 512 bytes) so the default 256 cases per property run in
//! well under a second each in a debug build.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use tasker_template::{DependencyGraph, TaskTemplate, TemplateErrorKind, TemplateErrors};

/// A random DAG. Step `i` depends only on steps generated before it, so the graph is acyclic by
/// construction; the declaration order is shuffled so that it need not be topological.
#[derive(Debug, Clone)]
struct Workflow {
    /// Step names, by generation index.
    names: Vec<String>,
    /// Each step's dependencies by generation index, without repeats, in the order written.
    deps: Vec<Vec<usize>>,
    /// Generation indices in declaration order.
    declared: Vec<usize>,
    /// Whether a lone dependency is written `depends_on_step: x` rather than as a list.
    single_key: Vec<bool>,
}

/// A rendered workflow: its YAML text and the line of each step's `- name:`, by generation index.
struct Rendered {
    yaml: String,
    name_lines: Vec<usize>,
}

impl Workflow {
    fn len(&self) -> usize {
        self.names.len()
    }

    fn render(&self) -> Rendered {
        let mut yaml = String::from(
            "name: random_dag\nnamespace_name: props\nversion: 1.2.3\nstep_templates:\n",
        );
        let mut line = 5;
        let mut name_lines = vec![0; self.len()];
        for &i in &self.declared {
            name_lines[i] = line;
            let _ = writeln!(yaml, "  - name: {}", self.names[i]);
            let _ = writeln!(yaml, "    handler_class: tasker::noop");
            line += 2;
            let deps: Vec<&str> = self.deps[i]
                .iter()
                .map(|&j| self.names[j].as_str())
                .collect();
            match deps.as_slice() {
                [] => continue,
                [one] if self.single_key[i] => {
                    let _ = writeln!(yaml, "    depends_on_step: {one}");
                }
                many => {
                    let _ = writeln!(yaml, "    depends_on_steps: [{}]", many.join(", "));
                }
            }
            line += 1;
        }
        Rendered { yaml, name_lines }
    }

    /// Each step's level computed from the definition, in generation order (which is
    /// topological): 0 without dependencies, else one more than the deepest dependency.
    fn reference_levels(&self) -> Vec<usize> {
        let mut levels = vec![0; self.len()];
        for i in 0..self.len() {
            levels[i] = self.deps[i]
                .iter()
                .map(|&j| levels[j] + 1)
                .max()
                .unwrap_or(0);
        }
        levels
    }

    /// `a` and every step `a` transitively depends on.
    fn ancestors_and_self(&self, a: usize) -> Vec<usize> {
        let mut seen = BTreeSet::from([a]);
        let mut todo = vec![a];
        while let Some(step) = todo.pop() {
            for &dep in &self.deps[step] {
                if seen.insert(dep) {
                    todo.push(dep);
                }
            }
        }
        seen.into_iter().collect()
    }

    fn graph(&self) -> DependencyGraph {
        DependencyGraph::new(self.declared.iter().map(|&i| {
            (
                self.names[i].as_str(),
                self.deps[i].iter().map(|&j| self.names[j].as_str()),
            )
        }))
    }
}

/// How one dependency is picked: any earlier step, or one of the last three (which makes long
/// chains, and so deep levels, common).
#[derive(Debug, Clone)]
enum Pick {
    Any(Index),
    Near(Index),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        any::<Index>().prop_map(Pick::Any),
        any::<Index>().prop_map(Pick::Near),
    ]
}

fn dag(max_steps: usize) -> impl Strategy<Value = Workflow> {
    (1..=max_steps)
        .prop_flat_map(|n| {
            (
                vec("[a-z]{1,8}", n),
                vec(vec(pick(), 0..4), n),
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                vec(any::<bool>(), n),
            )
        })
        .prop_map(|(words, picks, declared, single_key)| {
            // The index suffix keeps names unique; the shuffle keeps it from hinting at order.
            let names = words
                .iter()
                .enumerate()
                .map(|(i, word)| format!("{word}_{i}"))
                .collect();
            let deps = picks
                .iter()
                .enumerate()
                .map(|(i, picks)| {
                    let mut deps = Vec::new();
                    if i == 0 {
                        return deps;
                    }
                    for pick in picks {
                        let j = match pick {
                            Pick::Any(index) => index.index(i),
                            Pick::Near(index) => i - 1 - index.index(i.min(3)),
                        };
                        if !deps.contains(&j) {
                            deps.push(j);
                        }
                    }
                    deps
                })
                .collect();
            Workflow {
                names,
                deps,
                declared,
                single_key,
            }
        })
}

/// A random DAG plus one back edge: an ancestor `a` of `b` (or `b` itself) is made to depend on
/// `b`, so the graph has a cycle and every cycle runs through the edge `b -> a`.
fn cyclic(max_steps: usize) -> impl Strategy<Value = (Workflow, usize, usize)> {
    (dag(max_steps), any::<Index>(), any::<Index>()).prop_map(|(mut workflow, b, a)| {
        let b = b.index(workflow.len());
        let ancestors = workflow.ancestors_and_self(b);
        let a = ancestors[a.index(ancestors.len())];
        workflow.deps[a].push(b);
        (workflow, a, b)
    })
}

fn parsed(source: &str, origin: &str) -> Result<TaskTemplate, TestCaseError> {
    TaskTemplate::from_yaml_str(source, Some(origin))
        .map_err(|errors| TestCaseError::fail(format!("rejected:\n{errors}\n---\n{source}")))
}

proptest! {
    #[test]
    fn random_dags_validate_and_run_every_dependency_first(workflow in dag(60)) {
        let rendered = workflow.render();
        let template = parsed(&rendered.yaml, "dag.yaml")?;
        prop_assert_eq!(template.full_name(), "props/random_dag@1.2.3");
        let declared_names: Vec<&str> =
            workflow.declared.iter().map(|&i| workflow.names[i].as_str()).collect();
        let template_names: Vec<&str> =
            template.step_templates.iter().map(|s| s.name.as_str()).collect();
        prop_assert_eq!(&template_names, &declared_names);
        for &i in &workflow.declared {
            let step = template.step(&workflow.names[i]).unwrap();
            let expected: Vec<&str> =
                workflow.deps[i].iter().map(|&j| workflow.names[j].as_str()).collect();
            prop_assert_eq!(&step.depends_on_steps, &expected);
        }

        let graph = template.graph();
        prop_assert!(!graph.has_cycle());
        prop_assert_eq!(graph.find_cycle(), None);
        let names = &workflow.names;
        let expected_edges: BTreeSet<(&str, &str)> = workflow
            .deps
            .iter()
            .enumerate()
            .flat_map(|(i, deps)| deps.iter().map(move |&j| (names[j].as_str(), names[i].as_str())))
            .collect();
        let edges: BTreeSet<(&str, &str)> = graph.edges().into_iter().collect();
        prop_assert_eq!(graph.edge_count(), expected_edges.len());
        prop_assert_eq!(&edges, &expected_edges);
        let has_dependant: HashSet<usize> = workflow.deps.iter().flatten().copied().collect();
        let roots: Vec<&str> = workflow
            .declared
            .iter()
            .filter(|&&i| workflow.deps[i].is_empty())
            .map(|&i| workflow.names[i].as_str())
            .collect();
        let leaves: Vec<&str> = workflow
            .declared
            .iter()
            .filter(|i| !has_dependant.contains(i))
            .map(|&i| workflow.names[i].as_str())
            .collect();
        prop_assert_eq!(graph.roots(), roots);
        prop_assert_eq!(graph.leaves(), leaves);

        // Execution order: every step exactly once, each after all of its dependencies, and
        // exactly the documented order (by level, then declaration).
        let order = graph.execution_order().unwrap();
        prop_assert_eq!(order.len(), workflow.len());
        let position: HashMap<&str, usize> =
            order.iter().enumerate().map(|(at, name)| (*name, at)).collect();
        prop_assert_eq!(position.len(), workflow.len(), "a step appears twice: {:?}", order);
        for &(parent, child) in &expected_edges {
            prop_assert!(position[parent] < position[child], "{} ran before {}", child, parent);
        }
        let reference = workflow.reference_levels();
        let mut expected_order: Vec<(usize, usize)> = workflow
            .declared
            .iter()
            .enumerate()
            .map(|(at, &i)| (reference[i], at))
            .collect();
        expected_order.sort_unstable();
        let expected_order: Vec<&str> = expected_order
            .into_iter()
            .map(|(_, at)| declared_names[at])
            .collect();
        prop_assert_eq!(&order, &expected_order);

        // Levels: roots at 0, every step above each of its dependencies, exactly the definition.
        let levels = graph.levels().unwrap();
        let expected_levels: Vec<(&str, usize)> = workflow
            .declared
            .iter()
            .map(|&i| (workflow.names[i].as_str(), reference[i]))
            .collect();
        prop_assert_eq!(&levels, &expected_levels);
        let level_of: HashMap<&str, usize> = levels.iter().copied().collect();
        for root in graph.roots() {
            prop_assert_eq!(level_of[root], 0);
        }
        for &(parent, child) in &expected_edges {
            prop_assert!(level_of[parent] < level_of[child]);
        }

        // Critical path: a chain of real edges from a root, one step per level.
        let path = graph.critical_path().unwrap();
        let max_level = reference.iter().copied().max().unwrap();
        prop_assert_eq!(path.len(), max_level + 1);
        prop_assert_eq!(level_of[path[0]], 0);
        for pair in path.windows(2) {
            prop_assert!(
                expected_edges.contains(&(pair[0], pair[1])),
                "{} -> {} is not an edge", pair[0], pair[1]
            );
        }
    }

    #[test]
    fn random_cycles_are_rejected_with_one_real_cycle(
        (workflow, a, b) in cyclic(40),
    ) {
        let rendered = workflow.render();
        let errors = match TaskTemplate::from_yaml_str(&rendered.yaml, Some("cycle.yaml")) {
            Ok(_) => return Err(TestCaseError::fail(format!("accepted:\n{}", rendered.yaml))),
            Err(errors) => errors,
        };
        let kinds: Vec<&TemplateErrorKind> = errors.kinds().collect();
        let [TemplateErrorKind::Cycle { steps }] = kinds.as_slice() else {
            return Err(TestCaseError::fail(format!("expected one cycle error, got:\n{errors}")));
        };

        // A closed walk of real edges, in dependency order: each step depends on the one before.
        let index: HashMap<&str, usize> = workflow
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i))
            .collect();
        prop_assert!(steps.len() >= 2, "{:?}", steps);
        prop_assert_eq!(steps.first(), steps.last());
        for pair in steps.windows(2) {
            let (parent, child) = (index[pair[0].as_str()], index[pair[1].as_str()]);
            prop_assert!(
                workflow.deps[child].contains(&parent),
                "`{}` does not depend on `{}`", pair[1], pair[0]
            );
        }
        let distinct: HashSet<&String> = steps[1..].iter().collect();
        prop_assert_eq!(distinct.len(), steps.len() - 1, "not a simple cycle: {:?}", steps);
        // The DAG had no cycle, so every cycle uses the added edge: `a` depends on `b`.
        prop_assert!(
            steps.windows(2).any(|pair| pair[0] == workflow.names[b] && pair[1] == workflow.names[a]),
            "{:?} misses the back edge {} -> {}", steps, workflow.names[b], workflow.names[a]
        );

        // The message names the first step and its line.
        let first = &steps[0];
        prop_assert_eq!(
            errors.to_string(),
            format!(
                "cycle.yaml:{}: step `{first}`: dependency cycle: {}",
                rendered.name_lines[index[first.as_str()]],
                steps.join(" -> ")
            )
        );

        let graph = workflow.graph();
        prop_assert!(graph.has_cycle());
        let found: Option<Vec<String>> =
            graph.find_cycle().map(|c| c.into_iter().map(str::to_owned).collect());
        prop_assert_eq!(found.as_ref(), Some(steps));
        prop_assert_eq!(graph.execution_order(), None);
        prop_assert_eq!(graph.levels(), None);
        prop_assert_eq!(graph.critical_path(), None);
    }
}

/// A template touching most of the format: the seed for random edits.
const RICH: &str = r#"# A template with most keys, for mutation.
name: rich
namespace_name: props
version: 2.3.4
description: every key
default_dependent_system: crm
named_steps: [fetch, transform, store, notify]
schema:
  type: object
  required: [id]
  properties:
    id: { type: integer, minimum: 1 }
custom_events: [{ name: props.done, description: finished }]
handler_config: { informational: true }
configuration: { owner: props }
step_templates:
  - name: fetch
    handler_class: tasker::http
    default_retry_limit: 3
    timeout: 1500ms
    handler_config: { url: "https://example.com", headers: { accept: json } }
  - name: transform
    depends_on_step: fetch
    handler_class: tasker::noop
    default_retryable: false
    timeout: 2
  - name: store
    depends_on_steps: [fetch, transform]
    handler_class: tasker::noop
    skippable: true
  - name: notify
    depends_on_steps:
      - store
    handler_class: tasker::noop
    custom_events:
      - name: props.notified
environments:
  test:
    handler_config: { b: 2 }
    step_templates:
      - name: fetch
        default_retry_limit: 1
        timeout: 5m
        handler_config: { url: "http://localhost" }
  production:
"#;

/// One random edit of a template's bytes or lines.
#[derive(Debug, Clone)]
enum Edit {
    Insert(Index, u8),
    Replace(Index, u8),
    Delete(Index),
    DeleteLine(Index),
    DuplicateLine(Index),
}

/// Mostly bytes that mean something to YAML, so edits reach past the first syntax error.
fn edit_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => select(b":-[]{}\"' \n\t#&*!|>%@,?.0123456789az_".to_vec()),
        1 => any::<u8>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), edit_byte()).prop_map(|(at, byte)| Edit::Insert(at, byte)),
        (any::<Index>(), edit_byte()).prop_map(|(at, byte)| Edit::Replace(at, byte)),
        any::<Index>().prop_map(Edit::Delete),
        any::<Index>().prop_map(Edit::DeleteLine),
        any::<Index>().prop_map(Edit::DuplicateLine),
    ]
}

fn apply(source: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = source.as_bytes().to_vec();
    for edit in edits {
        match *edit {
            Edit::Insert(at, byte) => bytes.insert(at.index(bytes.len() + 1), byte),
            Edit::Replace(at, byte) if !bytes.is_empty() => {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            Edit::Delete(at) if !bytes.is_empty() => {
                bytes.remove(at.index(bytes.len()));
            }
            Edit::DeleteLine(at) | Edit::DuplicateLine(at) => {
                let mut lines: Vec<Vec<u8>> = bytes
                    .split_inclusive(|&b| b == b'\n')
                    .map(<[u8]>::to_vec)
                    .collect();
                if lines.is_empty() {
                    continue;
                }
                let at = at.index(lines.len());
                if matches!(edit, Edit::DeleteLine(_)) {
                    lines.remove(at);
                } else {
                    lines.insert(at, lines[at].clone());
                }
                bytes = lines.concat();
            }
            Edit::Replace(..) | Edit::Delete(_) => {}
        }
    }
    bytes
}

/// Uses everything a caller would use on the result, so a panic anywhere downstream of parsing
/// counts too. An accepted template must also pass `validate`, and a rejection must say why.
fn exercise(result: Result<TaskTemplate, TemplateErrors>) -> Result<(), TestCaseError> {
    match result {
        Ok(template) => {
            prop_assert_eq!(template.validate(), Ok(()));
            let graph = template.graph();
            let _ = (
                graph.execution_order(),
                graph.levels(),
                graph.critical_path(),
            );
            let _ = (graph.to_text(), graph.to_mermaid(), graph.to_dot());
            for environment in template.environments.keys() {
                let _ = template.for_environment(environment);
            }
        }
        Err(errors) => {
            prop_assert!(!errors.errors().is_empty());
            let _ = errors.to_string();
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        exercise(TaskTemplate::from_yaml_slice(&bytes, Some("fuzz.yaml")))?;
    }

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        exercise(TaskTemplate::from_yaml_str(&text, Some("fuzz.yaml")))?;
        exercise(TaskTemplate::from_yaml_str(&text, None))?;
    }

    #[test]
    fn yaml_like_strings_never_panic(text in "[a-z_:\\-\\[\\]{}\"' \n#&*!|>0-9,.]{0,300}") {
        exercise(TaskTemplate::from_yaml_str(&text, Some("fuzz.yaml")))?;
    }

    #[test]
    fn edited_templates_never_panic(edits in vec(edit(), 1..8)) {
        let bytes = apply(RICH, &edits);
        exercise(TaskTemplate::from_yaml_slice(&bytes, Some("rich.yaml")))?;
    }

    #[test]
    fn edited_random_dags_never_panic(workflow in dag(12), edits in vec(edit(), 1..6)) {
        let bytes = apply(&workflow.render().yaml, &edits);
        exercise(TaskTemplate::from_yaml_slice(&bytes, Some("dag.yaml")))?;
    }
}

#[test]
fn the_mutation_seed_is_a_valid_template() {
    let template = TaskTemplate::from_yaml_str(RICH, Some("rich.yaml")).unwrap();
    assert_eq!(template.full_name(), "props/rich@2.3.4");
    assert_eq!(
        template.graph().execution_order().unwrap(),
        ["fetch", "transform", "store", "notify"]
    );
}
