package planner

// builtinRisks are known upgrade risks of KubeVirt, each with its source
// (docs/upgrade-safety.md explains how they were read and which ones the
// planner handles by other means: the imageTag strategy bug is its own
// check, skipped minors and downgrades are never planned, teardown leftovers
// are cleaned by the teardown).
var builtinRisks = []Risk{
	{ID: "KV-5462", To: VersionRange{Tags: []string{"v0.40.0-rc.0", "v0.40.0-rc.1"}}, Severity: SeverityBlocks,
		Summary: "these release candidates build a malformed JSON patch for CRDs: the hop loops on CRD patch errors and 'etcdserver: request is too large'; fixed in v0.40.0",
		URL:     "https://github.com/kubevirt/kubevirt/issues/5462"},
	{ID: "KV-6763", From: VersionRange{Min: "v0.46.0", Below: "v0.47.0-alpha.0"}, To: VersionRange{Tags: []string{"v0.47.0-rc.0"}}, Severity: SeverityBlocks,
		Summary: "the rc changed the components' managed-by label and the operator fails with gRPC 'message larger than max'; v0.47.0 was never tagged, use v0.47.1",
		URL:     "https://github.com/kubevirt/kubevirt/issues/6763"},
	{ID: "KV-5352", To: VersionRange{Tags: []string{"v0.39.1"}}, Severity: SeverityBlocks,
		Summary: "the published kubevirt-operator.yaml referenced image digests the registry did not have (ImagePullBackOff); use v0.39.2",
		URL:     "https://github.com/kubevirt/kubevirt/issues/5352"},
	{ID: "CNAO-880", To: VersionRange{Tags: []string{"v0.42.0"}}, Severity: SeverityBlocks,
		Summary: "the v0.42.0 release has no downloadable kubevirt-operator.yaml; v0.42.1 replaces it",
		URL:     "https://github.com/kubevirt/cluster-network-addons-operator/pull/880"},
	{ID: "KV-2533", To: VersionRange{}, Methods: []Method{MethodImageTag}, Severity: SeverityRisky,
		When:    "the new release needs RBAC the running operator lacks (the agent then updates the operator first)",
		Summary: "an imageTag hop under an older operator can be refused as RBAC escalation; the CR goes Degraded with DeploymentFailed",
		URL:     "https://github.com/kubevirt/kubevirt/issues/2533"},
	{ID: "KV-7664", From: VersionRange{Below: "v0.53.0-alpha.0"}, To: VersionRange{Min: "v0.53.0-alpha.0", Below: "v0.54.0-alpha.0"}, Severity: SeverityRisky,
		Summary: "on nodes with different CPU models, LiveMigrate workload updates may not finish (host-model fixes shipped in v0.54.0)",
		URL:     "https://github.com/kubevirt/kubevirt/issues/7664"},
	{ID: "KV-9203", From: VersionRange{Tags: []string{"v0.58.0"}}, To: VersionRange{Min: "v0.59.0-alpha.0", Below: "v0.60.0-alpha.0"}, Severity: SeverityRisky,
		When:    "nodes run CentOS Stream 9 / EL9",
		Summary: "v0.58.0 lacks the container_t SELinux change for virt-launcher; hop through v0.58.1 or later",
		URL:     "https://github.com/kubevirt/kubevirt/pull/9203"},
	{ID: "KV-8330", From: VersionRange{Below: "v0.58.0-alpha.0"}, To: VersionRange{Min: "v0.58.0-alpha.0"}, Severity: SeverityRisky,
		When:    "nodes run Docker with SELinux enabled",
		Summary: "the Docker SELinux workaround became opt-in: set feature gate DockerSELinuxMCSWorkaround before the upgrade",
		URL:     "https://github.com/kubevirt/kubevirt/pull/8330"},
	{ID: "KV-11901", From: VersionRange{Below: "v1.3.0-alpha.0"}, To: VersionRange{Min: "v1.3.0-alpha.0"}, Severity: SeverityRisky,
		When:    "VMs use the core passt or macvtap network binding",
		Summary: "v1.3.0 discontinued the core passt and macvtap bindings: such VMs cannot restart; move them to network binding plugins first",
		URL:     "https://github.com/kubevirt/kubevirt/pull/11901"},
	{ID: "KV-12967", From: VersionRange{Below: "v1.4.0-alpha.0"}, To: VersionRange{Min: "v1.4.0-alpha.0"}, Severity: SeverityRisky,
		Summary: "Bochs replaces VGA as the default display of x86 EFI guests; annotate the KubeVirt CR with kubevirt.io/vga-display-efi-x86 before the upgrade to keep VGA",
		URL:     "https://github.com/kubevirt/kubevirt/pull/12967"},
	{ID: "KV-15016", From: VersionRange{Below: "v1.5.0-alpha.0"}, To: VersionRange{Min: "v1.5.0-alpha.0", Below: "v1.5.3"}, Severity: SeverityRisky,
		Summary: "while a new virt-handler drives an old launcher, post-copy migrations fail ('Postcopy is not yet compatible with multifd'); fixed in v1.5.3",
		URL:     "https://github.com/kubevirt/kubevirt/pull/15016"},
	{ID: "KV-15008", From: VersionRange{Below: "v1.5.0-alpha.0"}, To: VersionRange{Min: "v1.5.0-alpha.0", Below: "v1.5.3"}, Severity: SeverityRisky,
		Summary: "an updated virt-handler panics on migrations started by the old virt-controller; fixed in v1.5.3",
		URL:     "https://github.com/kubevirt/kubevirt/pull/15008"},
	{ID: "KV-15373", From: VersionRange{Min: "v1.5.0-alpha.0", Below: "v1.6.0-alpha.0"}, To: VersionRange{Min: "v1.6.0-alpha.0", Below: "v1.7.0-alpha.0"}, Severity: SeverityRisky,
		Summary: "workload-update live migrations after moving to 1.6 left some VMIs with two running virt-launcher pods and guest corruption (open, no fix identified)",
		URL:     "https://github.com/kubevirt/kubevirt/issues/15373"},
	{ID: "KV-15355", From: VersionRange{Below: "v1.6.0-alpha.0"}, To: VersionRange{Min: "v1.6.0-alpha.0"}, Severity: SeverityRisky,
		When:    "the Kubernetes SidecarContainers feature is off (on by default from Kubernetes 1.29, GA in 1.33)",
		Summary: "from v1.6.0 the guest console log runs as a native sidecar: without SidecarContainers every VM stays in Init",
		URL:     "https://github.com/kubevirt/kubevirt/issues/15355"},
	{ID: "KV-15400", To: VersionRange{Min: "v1.6.0-alpha.0"}, From: VersionRange{Below: "v1.7.0-alpha.0"}, Severity: SeverityRisky,
		When:    "instancetype.kubevirt.io v1alpha1/v1alpha2 objects, revisions or clients are still in use",
		Summary: "v1.6.0 stops serving instancetype.kubevirt.io v1alpha1/v1alpha2 and v1.7.0 removes them with their conversion; resync VMs on v1.3+ first",
		URL:     "https://github.com/kubevirt/kubevirt/pull/15400"},
	{ID: "KV-16386", From: VersionRange{Min: "v1.6.0-alpha.0", Below: "v1.7.0-alpha.0"}, To: VersionRange{Min: "v1.7.0-alpha.0", Below: "v1.9.0-alpha.0"}, Severity: SeverityRisky,
		Summary: "after the hop, live migration of VMs started under the old virt-launcher fails, so LiveMigrate workload updates stall and those VMs need a restart (open, critical-urgent)",
		URL:     "https://github.com/kubevirt/kubevirt/issues/16386"},
	{ID: "KV-17029", From: VersionRange{Tags: []string{"v1.6.0", "v1.6.1", "v1.6.2", "v1.6.3", "v1.7.0", "v1.7.1"}}, To: VersionRange{Min: "v1.9.0-alpha.0"}, Severity: SeverityRisky,
		Summary: "VMs created on v1.6.0-v1.6.3 or v1.7.0-v1.7.1 get a one-time PCI address shift on their next boot under 1.9+ unless they ran under v1.6.4, v1.7.2 or v1.8.x",
		URL:     "https://github.com/kubevirt/kubevirt/pull/17029"},
	{ID: "KV-18670", From: VersionRange{Tags: []string{"v1.8.4"}}, To: VersionRange{Min: "v1.9.0-alpha.0", Below: "v1.10.0-alpha.0"}, Severity: SeverityRisky,
		When:    "the cluster runs Kubernetes 1.36",
		Summary: "the virt-handler roll can overlap workload-update migrations and leave an orphaned source pod that blocks further migrations",
		URL:     "https://github.com/kubevirt/kubevirt/issues/18670"},
	{ID: "KV-18763", To: VersionRange{Min: "v1.9.0-alpha.0", Below: "v1.10.0-alpha.0"}, Severity: SeverityRisky,
		Summary: "when virt-handler restarts during its roll, a VMI that just finished a workload-update migration can be marked Failed (open)",
		URL:     "https://github.com/kubevirt/kubevirt/issues/18763"},
	{ID: "KV-17809", From: VersionRange{Min: "v1.9.0-alpha.0", Below: "v1.10.0-alpha.0"}, To: VersionRange{Min: "v1.10.0-alpha.0"}, Severity: SeverityRisky,
		When:    "nodes use cgroup v1",
		Summary: "v1.9.0 deprecated cgroup v1 and announced its removal in the next release; move nodes to cgroup v2 first",
		URL:     "https://github.com/kubevirt/kubevirt/pull/17809"},
}

func init() {
	for i := range builtinRisks {
		builtinRisks[i].Source = "kvgitops"
		builtinRisks[i].From.compile()
		builtinRisks[i].To.compile()
	}
}
