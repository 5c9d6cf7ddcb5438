package compute

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/api"
)

func TestLocalizeSubmitArgsFetchesTheApplicationAndItsFilesOnly(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		want  []string
		fetch []string
	}{
		{"a DBFS application with its arguments",
			[]string{"--conf", "spark.x=1", "dbfs:/apps/app.py", "dbfs:/data/in", "3"},
			[]string{"--conf", "spark.x=1", "submit/0/app.py", "dbfs:/data/in", "3"},
			[]string{"dbfs:/apps/app.py"}},
		{"py-files and jars lists, with = and without",
			[]string{"--py-files", "dbfs:/a/dep.zip,local.py", "--jars=dbfs:/j/x.jar", "--verbose", "dbfs:/apps/app.py"},
			[]string{"--py-files", "submit/0/dep.zip,local.py", "--jars=submit/1/x.jar", "--verbose", "submit/2/app.py"},
			[]string{"dbfs:/a/dep.zip", "dbfs:/j/x.jar", "dbfs:/apps/app.py"}},
		{"a local application is left alone",
			[]string{"--class", "org.example.Main", "/opt/app.jar", "--py-files", "dbfs:/x"},
			[]string{"--class", "org.example.Main", "/opt/app.jar", "--py-files", "dbfs:/x"},
			nil},
		{"options only", []string{"--version"}, []string{"--version"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, files := localizeSubmitArgs(tc.args)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			var fetched []string
			for _, f := range files {
				fetched = append(fetched, f.Remote)
			}
			if diff := cmp.Diff(tc.fetch, fetched); diff != "" {
				t.Errorf("fetched (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTaskLibrariesTakeFilesAndRefuseRepositories(t *testing.T) {
	cases := []struct {
		libs    string
		want    []libraryFile
		refused bool
	}{
		{`[]`, nil, false},
		{`[{"whl":"dbfs:/libs/demo-0.1-py3-none-any.whl"},{"jar":"/Shared/x.jar"}]`, []libraryFile{
			{Kind: "whl", Remote: "dbfs:/libs/demo-0.1-py3-none-any.whl", Local: "libs/0/demo-0.1-py3-none-any.whl"},
			{Kind: "jar", Remote: "/Shared/x.jar", Local: "libs/1/x.jar"}}, false},
		{`[{"pypi":{"package":"requests"}}]`, nil, true},
		{`[{"maven":{"coordinates":"a:b:1"}}]`, nil, true},
		{`[{"whl":""}]`, nil, true},
	}
	for _, tc := range cases {
		var raws []json.RawMessage
		if err := json.Unmarshal([]byte(tc.libs), &raws); err != nil {
			t.Fatal(err)
		}
		got, err := taskLibraries(raws)
		var ae *api.Error
		if tc.refused != (err != nil) || (err != nil && (!errors.As(err, &ae) || ae.Code != api.InvalidParameterValue)) {
			t.Errorf("%s: err %v, want refused %v", tc.libs, err, tc.refused)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.libs, diff)
		}
	}
}

func TestComputeTypeOfAClusterFollowsItsSourceAndRuntime(t *testing.T) {
	cases := []struct {
		source, version, want string
		refused               bool
	}{
		{SourceUI, "4.1.x-scala2.13", ComputeAllPurpose, false},
		{SourceAPI, "4.1.x-scala2.13", ComputeAllPurpose, false},
		{SourceJob, "4.1.x-scala2.13", ComputeJobs, false},
		{SourceJob, "apache-spark-4.1.x-scala2.13", ComputeJobsLight, false},
		{SourceAPI, "apache-spark-4.1.x-scala2.13", ComputeAllPurpose, true},
	}
	for _, tc := range cases {
		if got := ComputeType(tc.source, tc.version); got != tc.want {
			t.Errorf("ComputeType(%s, %s) = %s, want %s", tc.source, tc.version, got, tc.want)
		}
		if err := checkRuntimeSource(tc.source, tc.version); (err != nil) != tc.refused {
			t.Errorf("checkRuntimeSource(%s, %s) = %v, want refused %v", tc.source, tc.version, err, tc.refused)
		}
	}
	cat := Catalog{SparkVersions: SparkVersions("4.1.4")}
	if !cat.sparkVersion("apache-spark-4.1.x-scala2.13") {
		t.Errorf("the light runtime is not offered: %v", cat.versionKeys())
	}
}
