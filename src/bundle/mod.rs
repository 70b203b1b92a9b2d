//! TEMPORARY STUB (replaced by the wtoci branch's module at merge).
#![allow(missing_docs, unused_variables)]
use std::path::Path;
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("stub")]
    Stub,
}
pub fn to_oci(spec: &crate::Spec) -> Result<oci_spec::runtime::Spec, BundleError> {
    todo!()
}
pub fn from_oci(
    config: &oci_spec::runtime::Spec,
    bundle: &Path,
    id: &str,
) -> Result<crate::Spec, BundleError> {
    todo!()
}
pub fn write(bundle: &Path, config: &oci_spec::runtime::Spec) -> Result<(), BundleError> {
    todo!()
}
pub fn read(bundle: &Path) -> Result<oci_spec::runtime::Spec, BundleError> {
    todo!()
}
