//! Every embedded template parses, validates, and has the shape its post describes.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use expect_test::expect;
use tasker_blog_examples::TEMPLATES;
use tasker_template::TaskTemplate;

#[test]
fn every_template_validates_with_the_expected_shape() {
    let mut summary = String::new();
    for embedded in TEMPLATES {
        let template = TaskTemplate::from_yaml_str(embedded.yaml, Some(embedded.path))
            .unwrap_or_else(|errors| panic!("{errors}"));
        for environment in template.environments.keys() {
            template
                .for_environment(environment)
                .unwrap_or_else(|errors| panic!("{errors}"));
        }
        let graph = template.graph();
        let critical = graph.critical_path().unwrap();
        let _ = writeln!(summary, "{}", embedded.path);
        let _ = writeln!(
            summary,
            "  {}: {} steps",
            template.full_name(),
            template.step_templates.len()
        );
        let _ = writeln!(summary, "  roots: {}", graph.roots().join(", "));
        let _ = writeln!(summary, "  leaves: {}", graph.leaves().join(", "));
        let _ = writeln!(
            summary,
            "  critical path ({}): {}",
            critical.len(),
            critical.join(" -> ")
        );
    }
    expect![[r#"
        post_01_ecommerce_reliability/order_processing.yaml
          blog_examples/process_order@1.0.0: 5 steps
          roots: validate_cart
          leaves: send_confirmation
          critical path (5): validate_cart -> process_payment -> update_inventory -> create_order -> send_confirmation
        post_02_data_pipeline_resilience/customer_analytics.yaml
          blog_examples/customer_analytics@1.0.0: 8 steps
          roots: extract_orders, extract_users, extract_products
          leaves: send_notifications
          critical path (5): extract_orders -> transform_customer_metrics -> generate_insights -> update_dashboard -> send_notifications
        post_03_microservices_coordination/user_registration.yaml
          blog_examples/user_registration@1.0.0: 5 steps
          roots: create_user_account
          leaves: update_user_status
          critical path (4): create_user_account -> setup_billing_profile -> send_welcome_sequence -> update_user_status
        post_04_team_scaling/payments_process_refund.yaml
          payments/process_refund@2.1.0: 4 steps
          roots: validate_payment_eligibility
          leaves: notify_customer
          critical path (4): validate_payment_eligibility -> process_gateway_refund -> update_payment_records -> notify_customer
        post_04_team_scaling/customer_success_process_refund.yaml
          customer_success/process_refund@1.3.0: 5 steps
          roots: validate_refund_request
          leaves: update_ticket_status
          critical path (5): validate_refund_request -> check_refund_policy -> get_manager_approval -> execute_refund_workflow -> update_ticket_status
        post_05_production_observability/monitored_checkout.yaml
          blog_examples/monitored_checkout@1.0.0: 5 steps
          roots: validate_cart
          leaves: send_confirmation
          critical path (5): validate_cart -> process_payment -> update_inventory -> create_order -> send_confirmation
        engine_shapes/linear.yaml
          engine_shapes/linear_workflow@1.0.0: 6 steps
          roots: initialize_data
          leaves: finalize_workflow
          critical path (6): initialize_data -> validate_input -> process_data -> transform_results -> validate_output -> finalize_workflow
        engine_shapes/diamond.yaml
          engine_shapes/diamond_workflow@1.0.0: 7 steps
          roots: start_workflow
          leaves: end_workflow
          critical path (5): start_workflow -> branch_one_process -> branch_one_validate -> merge_branches -> end_workflow
        engine_shapes/parallel_merge.yaml
          engine_shapes/parallel_merge_workflow@1.0.0: 7 steps
          roots: fetch_user_data, fetch_order_data, fetch_inventory_data, fetch_pricing_data
          leaves: merge_all_data
          critical path (3): fetch_user_data -> process_user_data -> merge_all_data
        engine_shapes/tree.yaml
          engine_shapes/tree_workflow@1.0.0: 8 steps
          roots: root_initialization
          leaves: aggregate_results
          critical path (4): root_initialization -> branch_a_setup -> a_task_one -> aggregate_results
        engine_shapes/mixed.yaml
          engine_shapes/mixed_workflow@1.0.0: 9 steps
          roots: init_auth, init_config
          leaves: process_optional_data, finalize_and_report
          critical path (5): init_auth -> validate_permissions -> begin_processing -> process_critical_data -> finalize_and_report
        engine_shapes/dummy_task.yaml
          default/dummy_task@0.1.0: 4 steps
          roots: step-one, step-two
          leaves: step-four
          critical path (3): step-one -> step-three -> step-four
    "#]].assert_eq(&summary);
}

#[test]
fn every_template_file_is_embedded() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut on_disk = BTreeSet::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                let relative = path.strip_prefix(&root).unwrap();
                on_disk.insert(relative.to_str().unwrap().replace('\\', "/"));
            }
        }
    }
    let embedded: BTreeSet<String> = TEMPLATES.iter().map(|t| t.path.to_owned()).collect();
    assert_eq!(
        embedded.len(),
        TEMPLATES.len(),
        "a template is embedded twice"
    );
    assert_eq!(on_disk, embedded);
}
