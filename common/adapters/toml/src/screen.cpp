// The TOML screen (screen.hpp): a small scanner that knows where the keys, values,
// strings and comments of a document are, enough to refuse what toml++ 3.3 would
// mishandle. It is not a validator: what it does not understand it leaves to toml++.
#include <troupe/adapters/toml/screen.hpp>

#include <optional>

namespace troupe::toml {
namespace {

using Code = Rejection::Code;

// toml++ refuses values nested deeper than this itself.
constexpr std::size_t kMaxNesting = 256;

constexpr std::string_view kNonAsciiKey =
    "non-ASCII character in a key (names are A-Z a-z 0-9 _ -, and ASCII in quotes)";
constexpr std::string_view kNonAsciiOutside = "non-ASCII character outside a string or comment";

bool bare_key_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}
bool key_start(unsigned char c) { return bare_key_char(c) || c == '"' || c == '\''; }
bool non_ascii(unsigned char c) { return c >= 0x80; }

// Each step returns true when it understood its part and found nothing to refuse, and
// false either with error_ set (refused) or without (lost: the text is not TOML this
// scanner understands, so toml++ will refuse it, and only a careful scan follows).
class Scanner {
 public:
  Scanner(std::string_view text, const std::string& name) : s_(text), name_(name) {}

  Result<void> run() {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") i_ = 3;  // a UTF-8 byte order mark
    if (!document() && !error_) careful();
    if (error_) return *error_;
    return {};
  }

 private:
  std::string_view s_;
  const std::string& name_;
  std::size_t i_ = 0;
  int line_ = 1;
  std::optional<Rejection> error_;

  bool eof() const { return i_ >= s_.size(); }
  unsigned char peek(std::size_t ahead = 0) const {
    return i_ + ahead < s_.size() ? static_cast<unsigned char>(s_[i_ + ahead]) : 0;
  }
  bool fail(std::string what) {
    if (!error_) error_ = reject(Code::malformed, name_ + ":" + std::to_string(line_), std::move(what));
    return false;
  }
  static bool lost() { return false; }
  void skip_blanks() {
    while (peek() == ' ' || peek() == '\t') ++i_;
  }
  bool newline() {
    if (peek() == '\n') {
      ++i_;
    } else if (peek() == '\r' && peek(1) == '\n') {
      i_ += 2;
    } else {
      return false;
    }
    ++line_;
    return true;
  }
  void comment() {  // at '#', up to the line break
    while (!eof() && peek() != '\n' && peek() != '\r') ++i_;
  }
  void skip_blanks_lines_comments() {
    while (true) {
      skip_blanks();
      if (newline()) continue;
      if (peek() == '#') {
        comment();
        continue;
      }
      return;
    }
  }

  bool document() {
    while (true) {
      skip_blanks();
      if (eof()) return true;
      if (newline()) continue;
      if (peek() == '#') {
        comment();
        continue;
      }
      if (!(peek() == '[' ? header() : key_value(0))) return false;
      skip_blanks();
      if (peek() == '#') comment();
      if (eof()) return true;
      if (!newline()) return lost();
    }
  }

  bool header() {
    ++i_;  // '['
    if (peek() == '[') ++i_;
    skip_blanks();
    if (eof() || peek() == ']') return lost();
    if (non_ascii(peek())) return fail(std::string(kNonAsciiKey));
    if (!key_start(peek())) return lost();
    if (!key()) return false;
    if (peek() != ']') return lost();
    ++i_;
    if (peek() == ']') ++i_;
    return true;
  }

  // A dotted key; stops after the blanks that follow it.
  bool key() {
    while (true) {
      unsigned char c = peek();
      if (c == '"' || c == '\'') {
        if (!string(true)) return false;
      } else if (bare_key_char(c)) {
        while (bare_key_char(peek())) ++i_;
      } else if (non_ascii(c)) {
        return fail(std::string(kNonAsciiKey));
      } else {
        return lost();
      }
      skip_blanks();
      if (peek() == '.') {
        ++i_;
        skip_blanks();
        continue;
      }
      if (non_ascii(peek())) return fail(std::string(kNonAsciiKey));
      return true;
    }
  }

  bool key_value(std::size_t depth) {
    if (non_ascii(peek())) return fail(std::string(kNonAsciiKey));
    if (!key_start(peek())) return lost();
    if (!key()) return false;
    if (peek() != '=') return lost();
    ++i_;
    skip_blanks();
    return value(depth);
  }

  bool value(std::size_t depth) {
    if (eof() || depth > kMaxNesting) return lost();
    switch (peek()) {
      case '"':
      case '\'': return string(false);
      case '[': return array(depth + 1);
      case '{': return inline_table(depth + 1);
      default: return scalar();
    }
  }

  // A number, boolean, date or time: ASCII up to a value terminator ("1979-05-27
  // 07:32:00" has a blank in it).
  bool scalar() {
    std::size_t start = i_;
    while (!eof()) {
      unsigned char c = peek();
      if (non_ascii(c)) return fail(std::string(kNonAsciiOutside));
      if (c == ' ' && i_ > start && peek(1) >= '0' && peek(1) <= '9') {
        ++i_;
        continue;
      }
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ']' || c == '}' || c == '#')
        break;
      ++i_;
    }
    return i_ > start || lost();
  }

  bool array(std::size_t depth) {
    ++i_;  // '['
    while (true) {
      skip_blanks_lines_comments();
      if (eof()) return lost();
      unsigned char c = peek();
      if (c == ']') {
        ++i_;
        return true;
      }
      if (c == ',') {
        ++i_;
        continue;
      }
      if (non_ascii(c)) return fail(std::string(kNonAsciiOutside));
      if (!value(depth)) return false;
    }
  }

  bool inline_table(std::size_t depth) {
    ++i_;  // '{'
    while (true) {
      skip_blanks();
      if (eof()) return lost();
      unsigned char c = peek();
      if (c == '}') {
        ++i_;
        return true;
      }
      if (c == ',') {
        ++i_;
        continue;
      }
      if (c == '\n' || c == '\r' || c == '#') return lost();  // one line in TOML 1.0
      if (!key_value(depth)) return false;
      skip_blanks();
    }
  }

  bool string(bool is_key) {
    const unsigned char quote = peek();
    const std::string_view triple = quote == '"' ? "\"\"\"" : "'''";
    if (s_.substr(i_, 3) == triple) return multi_line_string(is_key, quote);
    ++i_;
    while (true) {
      if (eof()) return lost();
      unsigned char c = peek();
      if (c == '\n' || c == '\r') return lost();  // unterminated
      if (c == quote) {
        ++i_;
        return true;
      }
      if (non_ascii(c) && is_key) return fail(std::string(kNonAsciiKey));
      ++i_;
      if (c == '\\' && quote == '"') {  // an escape: the next character is part of it
        if (eof() || peek() == '\n' || peek() == '\r') return lost();
        if (non_ascii(peek()) && is_key) return fail(std::string(kNonAsciiKey));
        ++i_;
      }
    }
  }

  bool multi_line_string(bool is_key, unsigned char quote) {
    i_ += 3;
    while (true) {
      if (eof()) return lost();
      if (newline()) continue;
      unsigned char c = peek();
      if (c == quote && peek(1) == quote && peek(2) == quote) {
        std::size_t run = 3;
        while (peek(run) == quote) ++run;
        if (run > 5) return lost();  // at most two quotes end the content
        i_ += run;
        return true;
      }
      if (non_ascii(c) && is_key) return fail(std::string(kNonAsciiKey));
      ++i_;
      if (c != '\\' || quote != '"') continue;
      unsigned char next = peek();
      if (non_ascii(next))
        return fail("non-ASCII character right after a backslash in a multi-line string "
                    "(escape it as \\uXXXX)");
      if (next == ' ' || next == '\t' || next == '\n' || next == '\r') {  // a line-ending backslash
        do skip_blanks();
        while (newline());
        if (non_ascii(peek()))
          return fail("non-ASCII character first after a line-ending backslash in a multi-line "
                      "string (escape it as \\uXXXX)");
        continue;
      }
      if (eof()) return lost();
      ++i_;  // \" \\ \n \uXXXX ...: what follows the escaped character is scanned as usual
    }
  }

  // The scanner lost track, so toml++ will refuse the text too, but it may look at a
  // non-ASCII character before it gets there: refuse those.
  void careful() {
    for (; !eof(); ++i_) {
      if (peek() == '\n') ++line_;
      if (non_ascii(peek())) {
        fail(std::string(kNonAsciiOutside));
        return;
      }
    }
  }
};

}  // namespace

Result<void> screen_toml(std::string_view text, const std::string& name) {
  return Scanner(text, name).run();
}

}  // namespace troupe::toml
