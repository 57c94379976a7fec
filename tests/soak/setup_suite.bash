# tests/soak/setup_suite.bash - the same services as the main suites.
# ../setup_suite.bash finds helpers.bash and the repository root through
# BATS_TEST_DIRNAME, which is tests/soak here: run it as if from tests/.
_sm_soak_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../setup_suite.bash
source "$_sm_soak_dir/../setup_suite.bash"
eval "_sm_main_setup_suite()$(declare -f setup_suite | sed 1d)"
setup_suite() {
	local BATS_TEST_DIRNAME=${_sm_soak_dir%/soak}
	_sm_main_setup_suite
}
