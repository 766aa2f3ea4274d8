// nr/core/error.hpp — the exception hierarchy.
//
// Every error nr raises derives from nr::Error, so a program can catch one type. The message
// always names what is wrong: the offending shapes, the tensor or file name, the position.
#pragma once

#include <stdexcept>
#include <string>

namespace nr {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Two shapes that do not fit together (the message names both).
struct ShapeError : Error {
  using Error::Error;
};

// A value outside what an op or module accepts (negative size, unknown option...).
struct ValueError : Error {
  using Error::Error;
};

// A file that cannot be read, written or parsed (the message names the file).
struct IoError : Error {
  using Error::Error;
};

// An operation asked of a device this build cannot serve.
struct DeviceError : Error {
  using Error::Error;
};

// A NaN or Inf where a finite number was required (the message names where it appeared).
struct NumericError : Error {
  using Error::Error;
};

}  // namespace nr
