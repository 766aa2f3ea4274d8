// consumer — the smallest program built against an installed nr (see CMakeLists.txt here).
// Exits 0 if a (2, 3) tensor of zeros has 6 elements.
#include <nr/nr.hpp>

#include <iostream>

int main() {
    nr::Tensor t = nr::Tensor::zeros(nr::Shape{2, 3});  // (2, 3)
    std::cout << "numel = " << t.numel() << '\n';
    return t.numel() == 6 ? 0 : 1;
}
