// Command kvgitops runs KubeVirt's lifecycle from Git.
//
//	kvgitops run      the agent (see --help)
//	kvgitops plan     offline planning: what the agent would do
//	kvgitops version  print the version
//
// main only wires: flags and environment into a config, then constructors,
// then Run.
//
// It reads the environment (KVGITOPS_<FLAG>) and nothing else does.
// It must not hold logic beyond turning flags into the constructors' configs.
package main
