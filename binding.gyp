# CPU build of the fusedce addon (node-gyp). The CUDA variant is built by CMakeLists.txt
# (cmake-js) in its own folder; this file never needs nvcc.
#
# What ships is portable x86-64 / aarch64 code: no -march=native. Kernels that need AVX2/FMA/F16C
# live in their own translation units compiled with those flags only, and are chosen at run time
# by CPUID (cpp/dispatch.cpp), so the same binary runs on any CPU.
{
  "targets": [
    {
      "target_name": "fusedce",
      "sources": [
        "cpp/addon.cpp",
        "cpp/dispatch.cpp",
        "cpp/cross_entropy.cpp",
        "cpp/thread_pool.cpp",
        "cpp/cross_entropy_scalar.cpp"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "cpp"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags": ["-O3", "-fvisibility=hidden", "-fno-math-errno"],
      "cflags_cc": ["-std=c++17", "-O3", "-fvisibility=hidden", "-fno-math-errno", "-Wall", "-Wextra"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["-O3", "-fno-math-errno"]
      },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] } }
    }
  ]
}
