# CPU build of the fusedce addon (node-gyp). The CUDA variant is built by CMakeLists.txt
# (cmake-js) in its own folder; this file never needs nvcc.
#
# What ships is portable code: no -march=native. The AVX2/FMA/F16C kernels and the AVX-512
# (F/BW/VL) kernels are each one translation unit built as its own static library with those
# flags only (x86-64), and cpp/dispatch.cpp picks one at run time by CPUID, so the same binary
# runs on any x86-64 CPU. (GCC 12's AVX-512 headers trip -Wuninitialized on their own
# _mm512_undefined_* helpers; that target turns the warning off.) -fno-trapping-math lets the
# compiler turn selects in loops (x < c ? a : b) into vector blends; it changes no value.
# -ffp-contract=off: no a·b + c fused behind our back, so ISA clones of a loop (loss_rows.h)
# round alike (the kernels use FMA explicitly, by intrinsics).
{
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "cpp"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "cflags": ["-O3", "-fvisibility=hidden", "-fno-math-errno", "-fPIC"],
    "cflags_cc": ["-std=c++17", "-O3", "-fvisibility=hidden", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-fPIC", "-Wall", "-Wextra"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
      "OTHER_CPLUSPLUSFLAGS": ["-O3", "-fno-math-errno"]
    },
    "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] } }
  },
  "targets": [
    {
      "target_name": "fusedce",
      "sources": [
        "cpp/addon.cpp",
        "cpp/dispatch.cpp",
        "cpp/cross_entropy.cpp",
        "cpp/thread_pool.cpp",
        "cpp/cross_entropy_scalar.cpp",
        "cpp/cross_entropy_options.cpp",
        "cpp/soft_cross_entropy.cpp",
        "cpp/binary_cross_entropy.cpp",
        "cpp/loss_rows.cpp",
        "cpp/convert.cpp"
      ],
      "conditions": [
        ["target_arch=='x64'", {
          "dependencies": ["fusedce_avx2", "fusedce_avx512", "fusedce_avx512bf16"],
          "defines": ["FUSEDCE_HAVE_AVX2=1"]
        }]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "fusedce_avx2",
          "type": "static_library",
          "sources": ["cpp/cross_entropy_avx2.cpp"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-mavx2", "-mfma", "-mf16c"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/arch:AVX2"] } }
        },
        {
          "target_name": "fusedce_avx512",
          "type": "static_library",
          "sources": ["cpp/cross_entropy_avx512.cpp"],
          "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
                        "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/arch:AVX512"] } }
        },
        {
          "target_name": "fusedce_avx512bf16",
          "type": "static_library",
          "sources": ["cpp/cross_entropy_avx512bf16.cpp"],
          "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-mf16c",
                        "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-mf16c"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/arch:AVX512"] } }
        }
      ]
    }]
  ]
}
