// The bad-input error table (tests/errors/cases.txt) run through the real `strata` binary: every
// case must exit 2 and print exactly one line on stderr, containing the file, the field and the
// reason the table expects. docs/errors.md must list every case of the table.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "errors/error_test_util.h"

extern char** environ;

namespace strata::errors {
namespace {

namespace fs = std::filesystem;

struct CliCase {
  std::string id;
  std::vector<std::string> args;      // after `strata`, as in cases.txt: {cases} {configs} {tmp} are filled in by run_case
  std::vector<std::string> expected;  // substrings of the stderr line
};

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  const size_t last = text.find_last_not_of(" \t");
  return text.substr(first, last - first + 1);
}

std::vector<std::string> split(const std::string& text, const std::string& separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t at = text.find(separator, start);
    parts.push_back(trim(text.substr(start, at == std::string::npos ? std::string::npos : at - start)));
    if (at == std::string::npos) return parts;
    start = at + separator.size();
  }
}

std::vector<CliCase> load_table() {
  std::vector<CliCase> cases;
  std::ifstream in(source_dir() + "/tests/errors/cases.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (trim(line).empty() || trim(line)[0] == '#') continue;
    const std::vector<std::string> parts = split(line, " | ");
    CliCase c;
    c.id = parts[0];
    if (parts.size() >= 2) {
      std::istringstream words(parts[1]);
      for (std::string word; words >> word;) c.args.push_back(word);
    }
    c.expected.assign(parts.begin() + std::min<size_t>(2, parts.size()), parts.end());
    cases.push_back(std::move(c));
  }
  return cases;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

struct StrataRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `strata args...` with stdout and stderr captured in files under `dir`.
StrataRun run_strata(const std::vector<std::string>& args, const fs::path& dir) {
  const std::string out_path = (dir / "stdout.txt").string();
  const std::string err_path = (dir / "stderr.txt").string();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> words = {STRATA_BINARY};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);
  StrataRun run;
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return run;
  int status = 0;
  if (waitpid(pid, &status, 0) == pid && WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
  run.out = read_file(out_path);
  run.err = read_file(err_path);
  return run;
}

class ErrorTable : public ::testing::TestWithParam<CliCase> {};

TEST_P(ErrorTable, ExitsTwoWithOneLineNamingFileFieldReason) {
  const CliCase& c = GetParam();
  ASSERT_GE(c.args.size(), 1u) << "case " << c.id << " has no arguments";
  ASSERT_FALSE(c.expected.empty()) << "case " << c.id << " expects nothing";
  const fs::path tmp = fresh_temp_dir("cli-" + c.id);
  std::vector<std::string> args;
  for (const std::string& arg : c.args) {
    std::string word = replace_all(arg, "{cases}", source_dir() + "/tests/errors/cases");
    word = replace_all(word, "{configs}", source_dir() + "/configs");
    args.push_back(replace_all(word, "{tmp}", tmp.string()));
  }
  const StrataRun run = run_strata(args, tmp);
  EXPECT_EQ(run.exit_code, 2) << "stderr: " << run.err;
  EXPECT_EQ(run.out, "") << "nothing on stdout for bad input";
  ASSERT_FALSE(run.err.empty());
  EXPECT_EQ(run.err.back(), '\n');
  EXPECT_EQ(run.err.find('\n'), run.err.size() - 1) << "more than one line on stderr:\n" << run.err;
  EXPECT_EQ(run.err.rfind("strata", 0), 0u) << run.err;
  for (const std::string& piece : c.expected)
    EXPECT_NE(run.err.find(piece), std::string::npos) << "no '" << piece << "' in: " << run.err;
  fs::remove_all(tmp);
}

// Printed as its id: gtest_discover_tests names each ctest entry ".../<id>" from it.
void PrintTo(const CliCase& c, std::ostream* out) { *out << c.id; }

INSTANTIATE_TEST_SUITE_P(Cases, ErrorTable, ::testing::ValuesIn(load_table()));

TEST(ErrorTableFile, HasAtLeastFortyDistinctCasesAllDocumented) {
  const std::vector<CliCase> cases = load_table();
  EXPECT_GE(cases.size() + profile_case_ids().size(), 40u);
  const std::string doc = read_file(source_dir() + "/docs/errors.md");
  ASSERT_FALSE(doc.empty()) << "docs/errors.md is missing";
  std::vector<std::string> ids;
  for (const CliCase& c : cases) ids.push_back(c.id);
  for (const std::string& id : profile_case_ids()) ids.push_back(id);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_NE(doc.find("`" + ids[i] + "`"), std::string::npos) << ids[i] << " is not in docs/errors.md";
    for (size_t j = 0; j < i; ++j) EXPECT_NE(ids[i], ids[j]) << "duplicate case id";
  }
}

}  // namespace
}  // namespace strata::errors
