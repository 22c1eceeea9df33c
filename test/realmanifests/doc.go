// Package realmanifests finds the genuine kubevirt-operator.yaml release
// assets kept beside the project (../shared/real-manifests, or the folder
// KVGITOPS_REAL_MANIFESTS names) for tests, the release server and the
// demo. The files are read where they are and never copied into the
// repository.
//
// Trusted files sit at the top of the folder, one per tag (v1.4.0.yaml);
// files under edited/ are third-party copies with known edits, realistic
// inputs that are not genuine releases.
//
// A test that needs the folder calls Require: with CI=true a missing folder
// fails the test, elsewhere the test is skipped with a message saying what
// was skipped.
package realmanifests
