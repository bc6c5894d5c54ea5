//! The one integration-test binary: CLI behaviour, diagnostics, schema, hostile input,
//! rendering safety, the engine on SimCluster, and live tests on the real control plane and its
//! real node.

mod canary;
mod containment;
mod contract;
mod contract_live;
mod crash;
mod differential;
mod drill;
mod engine;
mod exercise;
mod faults;
mod forensics;
mod fuzz;
mod handover;
mod harness;
mod hostile;
mod layers;
mod live;
mod locks;
mod mass;
mod notify;
mod real_node;
mod redeploy;
mod render_props;
mod report;
mod schema;
mod validate;
