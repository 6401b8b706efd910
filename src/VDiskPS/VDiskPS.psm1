# Loads the build of the VDiskPS cmdlets that suits the running PowerShell:
#   Desktop/        Windows PowerShell 5.1 (.NET Framework 4.7.2)
#   Core/           PowerShell 7.4+ (.NET 8 and later), compiled by the JIT as it runs
#   Core/<os-arch>/ the same assemblies with native code for .NET 10 (PowerShell 7.6+) on that
#                   platform, so that the first call of a session does not wait for the JIT
# A platform without its precompiled folder, or a session that cannot ask (constrained language),
# loads Core/: the same IL, only compiled later.
$build = 'Desktop'
if ($PSEdition -eq 'Core') {
    $build = 'Core'
    try {
        if ([Environment]::Version.Major -ge 10) {
            $os = if ($IsWindows) { 'win' } elseif ($IsMacOS) { 'osx' } else { 'linux' }
            $arch = [System.Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture.ToString().ToLowerInvariant()
            if ([System.IO.File]::Exists([System.IO.Path]::Combine($PSScriptRoot, 'Core', "$os-$arch", 'VDiskPS.dll'))) {
                $build = "Core/$os-$arch"
            }
        }
    }
    catch {
        $build = 'Core'
    }
}

Import-Module -Name ([System.IO.Path]::Combine($PSScriptRoot, $build, 'VDiskPS.dll'))
Export-ModuleMember -Cmdlet *
