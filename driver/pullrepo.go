package driver

import "path/filepath"

// pullRepoDirName is the directory, in the driver's home, shaped like an
// ostree repository's payload links: objects/xx/<rest of the SHA-256>
// .payload-link, a symbolic link to a store object or host object with
// that content. See pullRepo.
const pullRepoDirName = "partial-pull-repo"

// PartialPullRepo returns the directory c/storage's pull option
// ostree_repos must list for partial pulls into the store at graphRoot to
// take contents the store or the host repository already has, instead
// of fetching them: `[storage.options.pull_options] ostree_repos =
// "<graphroot>/cfs/partial-pull-repo"`.
func PartialPullRepo(graphRoot string) string {
	return filepath.Join(graphRoot, Name, pullRepoDirName)
}
