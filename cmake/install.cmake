# install.cmake: the man page, and `cmake --install build [--prefix P]` (or `make install`) puts in place
#   bin/sparrow                          the command-line tool
#   lib/libsparrow.so*                   the shared library (public API only)
#   include/sparrow.h                    its header
#   lib/pkgconfig/sparrow.pc             pkg-config --cflags --libs sparrow
#   lib/cmake/sparrow/                   find_package(sparrow) -> sparrow::sparrow
#   share/man/man1/sparrow.1             man sparrow
#   share/sparrow/plot.py                what `sparrow plot` runs
# (lib may be lib/<multiarch> under /usr, as GNUInstallDirs decides.) Included from
# CMakeLists.txt after the targets are defined.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS sparrow EXPORT sparrowTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS sparrow_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES include/sparrow.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The man page is made from the tool's --help texts after each link (doc/make_man.py).
find_program(SPR_MAN_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT SPR_MAN_PYTHON)
  message(FATAL_ERROR "/usr/bin/python3 is needed to make the man page (scripts/setup.sh)")
endif()
add_custom_command(OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/sparrow.1
  COMMAND ${SPR_MAN_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/doc/make_man.py
    $<TARGET_FILE:sparrow_cli> ${CMAKE_CURRENT_BINARY_DIR}/sparrow.1
  DEPENDS sparrow_cli ${CMAKE_CURRENT_SOURCE_DIR}/doc/make_man.py
  COMMENT "man page sparrow.1 from the --help texts")
add_custom_target(sparrow_man ALL DEPENDS ${CMAKE_CURRENT_BINARY_DIR}/sparrow.1)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sparrow.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES python/sparrow/plot.py DESTINATION ${CMAKE_INSTALL_DATADIR}/sparrow)

# pkg-config: relocatable like the CMake package: the prefix is found from the .pc
# file's own place (${pcfiledir}), so `cmake --install --prefix P` works whatever
# CMAKE_INSTALL_PREFIX was at configure time.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(SPR_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH SPR_PC_UP "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
  string(REGEX REPLACE "/$" "" SPR_PC_UP "${SPR_PC_UP}")
  set(SPR_PC_PREFIX "\${pcfiledir}/${SPR_PC_UP}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(SPR_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(SPR_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(SPR_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(SPR_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(cmake/sparrow.pc.in ${CMAKE_CURRENT_BINARY_DIR}/sparrow.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sparrow.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# CMake package: sparrow::sparrow, relocatable (paths relative to the config file).
install(EXPORT sparrowTargets NAMESPACE sparrow::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sparrow)
configure_package_config_file(cmake/sparrowConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/sparrowConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sparrow)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/sparrowConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sparrowConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/sparrowConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sparrow)
