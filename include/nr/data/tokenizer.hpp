// nr/data/tokenizer.hpp — moved to nr/tokenize/tokenizer.hpp (the Tokenizer concept, ByteTokenizer).
#pragma once
#include "nr/tokenize/tokenizer.hpp"
