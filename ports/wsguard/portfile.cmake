# vcpkg overlay port for wsguard, kept in the wsguard tree:
#   vcpkg install wsguard --overlay-ports=<wsguard>/ports
# It builds from the checkout it lives in. A registry port would fetch a
# release instead (vcpkg_from_github with REF v${VERSION} and its SHA512).
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
if(NOT EXISTS "${SOURCE_PATH}/include/wsguard.hpp")
  message(FATAL_ERROR "wsguard overlay port: expected the wsguard sources at ${SOURCE_PATH}")
endif()

# Header-only: a debug build would install the same files again.
set(VCPKG_BUILD_TYPE release)

# The core installs only wsguard.hpp; the "redis" feature adds
# wsguard/redis.hpp, the wsguard-redis pkg-config module and wsguard::redis.
set(redis_option -Dredis=disabled)
if("redis" IN_LIST FEATURES)
  set(redis_option -Dredis=enabled)
endif()

vcpkg_configure_meson(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -Dtests=disabled
    -Dbenchmarks=disabled
    -Dexamples=disabled
    -Dfuzzing=disabled
    ${redis_option}
)
vcpkg_install_meson()
# meson already writes prefix=${pcfiledir}/../.. (--pkgconfig.relocatable);
# this keeps vcpkg's own checks in charge of the .pc file.
vcpkg_fixup_pkgconfig()

# Installed by meson: include/wsguard.hpp and the generated data it includes
# (include/wsguard/detail/public_suffix_data.hpp), share/pkgconfig/wsguard.pc,
# share/wsguard/wsguardConfig.cmake and wsguardConfigVersion.cmake (with
# "redis": include/wsguard/redis.hpp, share/pkgconfig/wsguard-redis.pc,
# share/wsguard/wsguardHiredis.cmake). They locate the header relative to
# themselves, so no vcpkg_cmake_config_fixup.
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
